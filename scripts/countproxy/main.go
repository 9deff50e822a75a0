// Command countproxy is a reverse proxy that counts the requests passing
// through it, so the benchmarks can report how many requests each tool makes
// for the same push. GET /_count returns the count since the last
// POST /_reset; every other path goes to the registry.
//
//	countproxy -listen 127.0.0.1:5001 -registry http://127.0.0.1:5000
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5001", "address to listen on")
	target := flag.String("registry", "http://127.0.0.1:5000", "registry to forward to")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil {
		log.Fatalf("registry URL: %v", err)
	}
	var count atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(u)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_count", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, count.Load()) })
	mux.HandleFunc("POST /_reset", func(w http.ResponseWriter, _ *http.Request) { count.Store(0) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		proxy.ServeHTTP(w, r)
	})
	log.Fatal(http.ListenAndServe(*listen, mux))
}
