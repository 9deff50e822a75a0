// Package oci holds digestline's view of OCI content: the artifact graph a
// build produces and every later step checks against, the deterministic image
// builder, the OCI image layout (an import/export format), and the blob store
// interface that connects them.
package oci
