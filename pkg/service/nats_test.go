package service

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// secureServer runs a NATS server that wants a password or an nkey, over
// TLS when tlsConf is set.
func secureServer(t *testing.T, nkeyPub string, tlsConf *tls.Config) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "pusher", Password: "s3cret-pass"}},
		Nkeys: []*server.NkeyUser{{Nkey: nkeyPub}}}
	if tlsConf != nil {
		opts.TLSConfig, opts.TLS = tlsConf, true
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

func seedFile(t *testing.T) (file, pub string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ = kp.PublicKey()
	file = filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(file, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, pub
}

// clearNATSEnv unsets every DIGESTLINE_NATS_* variable for the test.
func clearNATSEnv(t *testing.T) {
	for _, k := range []string{"USER", "PASSWORD", "TOKEN", "NKEY", "CREDS", "TLS_CA", "TLS_CERT", "TLS_KEY"} {
		t.Setenv("DIGESTLINE_NATS_"+k, "")
	}
}

func TestSecuredBus(t *testing.T) {
	seed, pub := seedFile(t)
	otherSeed, _ := seedFile(t)
	url := secureServer(t, pub, nil)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		error string // "" means it connects
	}{
		{"password", map[string]string{"USER": "pusher", "PASSWORD": "s3cret-pass"}, ""},
		{"wrong password", map[string]string{"USER": "pusher", "PASSWORD": "guess"}, "refused our credentials"},
		{"nkey", map[string]string{"NKEY": seed}, ""},
		{"someone else's nkey", map[string]string{"NKEY": otherSeed}, "refused our credentials"},
		{"nothing", nil, "refused our credentials"},
		{"half a password", map[string]string{"USER": "pusher"}, "set both DIGESTLINE_NATS_USER and DIGESTLINE_NATS_PASSWORD"},
		{"missing creds file", map[string]string{"CREDS": "/nonexistent.creds"}, "DIGESTLINE_NATS_CREDS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearNATSEnv(t)
			for k, v := range tc.env {
				t.Setenv("DIGESTLINE_NATS_"+k, v)
			}
			nc, _, err := ConnectFromEnv(url, "test")
			if tc.error == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				nc.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("connect = %v, want an error saying %q", err, tc.error)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "guess") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestAServiceWithWrongCredentialsFailsAtStart: the process does not start
// (and so never looks healthy) when NATS refuses it, and says why.
func TestAServiceWithWrongCredentialsFailsAtStart(t *testing.T) {
	_, pub := seedFile(t)
	url := secureServer(t, pub, nil)
	clearNATSEnv(t)
	t.Setenv("DIGESTLINE_NATS_USER", "pusher")
	t.Setenv("DIGESTLINE_NATS_PASSWORD", "wrong")
	ran := false
	p := process{natsURL: url, logLevel: "error", healthAddr: "127.0.0.1:0", grace: time.Second}
	err := p.run(context.Background(), "pusher", func(context.Context, Deps) error { ran = true; return nil })
	if err == nil || ran || !strings.Contains(err.Error(), "refused our credentials") {
		t.Fatalf("run = %v (ran: %v), want a refusal before the service runs", err, ran)
	}
}

func TestTLSBus(t *testing.T) {
	dir := t.TempDir()
	serverConf, caFile := selfSignedTLS(t, dir)
	seed, pub := seedFile(t)
	url := secureServer(t, pub, serverConf)

	clearNATSEnv(t)
	t.Setenv("DIGESTLINE_NATS_NKEY", seed)
	if _, _, err := ConnectFromEnv(url, "test"); err == nil || !strings.Contains(err.Error(), "TLS to NATS") {
		t.Fatalf("connect without the CA = %v, want a TLS error", err)
	}
	t.Setenv("DIGESTLINE_NATS_TLS_CA", caFile)
	nc, _, err := ConnectFromEnv(url, "test")
	if err != nil {
		t.Fatalf("connect with the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the connection is not TLS")
	}
}

// selfSignedTLS makes a certificate for 127.0.0.1 that is its own CA.
func selfSignedTLS(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "digestline test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, caFile
}
