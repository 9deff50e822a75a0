// Package index keeps the lists the API reads newest first, a page at a
// time, at a cost that does not grow with their length: the history of
// each environment, repository and digest, and the runs.
//
// A list is a subject of the index stream (events.IndexStream); each entry
// is a message on it that names the entry before it by its stream
// sequence. The newest entry is one read (the last message on the
// subject), each older one another (by sequence), so a page of twenty is
// twenty reads at 1k entries or 100k. An entry is stored once, on its first
// list; the others hold a reference to it. A page's cursor is the sequence
// of the entry after it.
//
// JetStream cannot read a subject backwards, and listing and sorting keys
// (what the history did before) reads everything: hence the links.
package index
