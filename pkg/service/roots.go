package service

// The services and the CLI run in FROM-scratch images (make images), which
// hold no CA bundle: without roots of its own, every TLS connection — a
// forge over HTTPS, a registry, a chat's webhook, an OTLP collector —
// fails as an unknown authority. Go's fallback roots (the Mozilla bundle,
// as golang.org/x/crypto keeps it) are used only where the system has
// none; a machine's own roots, SSL_CERT_FILE and SSL_CERT_DIR still win.
import _ "golang.org/x/crypto/x509roots/fallback"
