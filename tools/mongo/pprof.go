package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// servePprof serves Go's runtime profiles of this process on a loopback address, so that a benchmark can
// take a CPU profile of exactly the window it measures (GET /debug/pprof/profile?seconds=N). The handlers
// are mounted on a mux of their own: nothing else is served there.
func servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("%s is not a loopback address", addr)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)

	fmt.Printf("PPROF=http://%s/debug/pprof/\n", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}
