package service

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSSecurityFromEnv reads how to authenticate to NATS, and whether to use
// TLS, from the environment:
//
//	DIGESTLINE_NATS_USER, DIGESTLINE_NATS_PASSWORD   user and password
//	DIGESTLINE_NATS_TOKEN                            an authorization token
//	DIGESTLINE_NATS_NKEY                             a file holding an nkey seed
//	DIGESTLINE_NATS_CREDS                            a .creds file (JWT and seed)
//	DIGESTLINE_NATS_TLS_CA                           CA to verify the server (turns TLS on)
//	DIGESTLINE_NATS_TLS_CERT, DIGESTLINE_NATS_TLS_KEY a client certificate
//
// Secrets are only handed to the NATS client; none is logged.
func NATSSecurityFromEnv() ([]nats.Option, error) {
	var opts []nats.Option
	user, pass := os.Getenv("DIGESTLINE_NATS_USER"), os.Getenv("DIGESTLINE_NATS_PASSWORD")
	if user != "" || pass != "" {
		if user == "" || pass == "" {
			return nil, errors.New("set both DIGESTLINE_NATS_USER and DIGESTLINE_NATS_PASSWORD")
		}
		opts = append(opts, nats.UserInfo(user, pass))
	}
	if t := os.Getenv("DIGESTLINE_NATS_TOKEN"); t != "" {
		opts = append(opts, nats.Token(t))
	}
	if f := os.Getenv("DIGESTLINE_NATS_NKEY"); f != "" {
		o, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			return nil, fmt.Errorf("DIGESTLINE_NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	}
	if f := os.Getenv("DIGESTLINE_NATS_CREDS"); f != "" {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("DIGESTLINE_NATS_CREDS: %w", err)
		}
		opts = append(opts, nats.UserCredentials(f))
	}
	if ca := os.Getenv("DIGESTLINE_NATS_TLS_CA"); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	cert, key := os.Getenv("DIGESTLINE_NATS_TLS_CERT"), os.Getenv("DIGESTLINE_NATS_TLS_KEY")
	if cert != "" || key != "" {
		if cert == "" || key == "" {
			return nil, errors.New("set both DIGESTLINE_NATS_TLS_CERT and DIGESTLINE_NATS_TLS_KEY")
		}
		opts = append(opts, nats.ClientCert(cert, key))
	}
	return opts, nil
}

// ConnectFromEnv connects like Connect, authenticating as the environment
// says (see NATSSecurityFromEnv).
func ConnectFromEnv(url, clientName string) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := NATSSecurityFromEnv()
	if err != nil {
		return nil, nil, err
	}
	return Connect(url, clientName, opts...)
}

// explainConnect turns NATS's connect errors into what to do next, by
// what they are (errors.Is/As), never by their text.
func explainConnect(url string, err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		recordHdr tls.RecordHeaderError
		tlsAlert  tls.AlertError
	)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired):
		return fmt.Errorf("NATS at %s refused our credentials (check DIGESTLINE_NATS_USER/PASSWORD, _TOKEN, _NKEY or _CREDS): %w", url, err)
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted),
		errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify),
		errors.As(err, &recordHdr), errors.As(err, &tlsAlert):
		return fmt.Errorf("TLS to NATS at %s failed (check DIGESTLINE_NATS_TLS_CA, _CERT and _KEY, and the URL's scheme): %w", url, err)
	}
	return fmt.Errorf("connect to NATS at %s (set --nats or DIGESTLINE_NATS_URL): %w", url, err)
}
