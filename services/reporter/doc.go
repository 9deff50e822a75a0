// Package reporter is the reporter service: it decides promotions through
// the gates (promotion.requested, and a build run's own verify.completed),
// turns each verified tag move into the environment's promotion record
// (current digest per environment and repository, in the promotions KV
// bucket), its history, its attestation and a promoted event, and serves
// records, history, runs (read from each run's subjects) and the page over
// HTTP for deployers, CI and people.
package reporter
