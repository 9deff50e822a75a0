// Package oci holds digestline's view of OCI content:
//   - the artifact graph a build produces and every later step checks
//     against (graph.go, walk.go), and the blob store interface that
//     connects the steps (store.go);
//   - the deterministic image builder (build.go, tree.go, format.go: layers,
//     config and manifest from a directory, reproducible on any machine) and
//     artifacts attached to an image (artifact.go);
//   - SBOM generation in SPDX 2.3 and CycloneDX 1.5 (sbom.go), from the
//     files of the layers and the packages found in them — Go build info,
//     dpkg's status, Python distributions, npm packages (packages.go);
//   - the OCI image layout, an import and export format (layout.go, index.go);
//   - safe tar extraction (extract.go) and applying an image's layers into
//     a root filesystem with whiteouts (unpack.go), refusing any entry that
//     would land outside its directory.
package oci
