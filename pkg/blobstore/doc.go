// Package blobstore keeps the blobs between builder and pusher in the
// JetStream Object Store, keyed by digest: an oci.BlobStore that any
// service on the bus can read, so the services need share no disk.
package blobstore
