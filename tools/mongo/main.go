// Command credit-kit-mongo runs an embedded MongoDB-compatible server for credit-kit's tests, demo and
// benchmarks: FerretDB v1 with its SQLite backend, behind a small wire-protocol gate that restores the
// single-document atomicity MongoDB guarantees.
//
// Why the gate: FerretDB v1 runs findAndModify and update as "read the document, compute, write the whole
// document back" with no lock around the pair. Two concurrent {$inc: {balance: -1}} commands can both read
// balance 5 and both write 4, losing an update, and a {balance: {$gte: 1}} guard can pass twice for the
// last credit. MongoDB never does that: every write to a single document is atomic. The gate accepts the
// client connections itself and forwards each command to FerretDB (over a private Unix socket), holding
// a lock on the documents a write names (by _id), or a lock on everything for writes it cannot narrow to
// documents; reads and inserts hold nothing. So writes of one document never overlap, and the rest
// interleaves much as on MongoDB (gate.go says exactly what runs beside what).
//
// FerretDB itself is built with ferretdb-sqlite-index.patch applied (tools/embedded.ts does it), so that
// lookups by _id use the _id index; see that file and tools/README.md.
//
// Usage:
//
//	credit-kit-mongo [-listen 127.0.0.1:0] [-data-dir DIR] [-no-gate] [-plan-log FILE] [-pprof-listen ADDR]
//
// When the server is ready it prints one line, "MONGODB_URI=mongodb://HOST:PORT/", on stdout.
// Without -data-dir the data lives in a temporary directory removed on exit (with the same durable
// settings; tools/README.md, "Data durability", says why).
//
// -plan-log FILE writes how SQLite runs each statement on collection data to FILE (see planlog.go).
// -pprof-listen ADDR serves Go's runtime profiles (net/http/pprof) on ADDR, which must be a loopback
// address; it prints "PPROF=http://HOST:PORT/debug/pprof/" on stdout before the URI line.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

const (
	opMsg            = 2013
	headerLen        = 16
	maxMessageLen    = 48 << 20 // MongoDB's maxMessageSizeBytes
	flagMoreToCome   = 1 << 1
	flagChecksumPres = 1 << 0
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address for clients (port 0 picks a free port)")
	dataDir := flag.String("data-dir", "", "directory for the SQLite files (default: a temporary directory removed on exit)")
	noGate := flag.Bool("no-gate", false, "forward commands without the lock (only to measure FerretDB's own behaviour)")
	verbose := flag.Bool("verbose", false, "log FerretDB's own messages to stderr")
	planLogFile := flag.String("plan-log", "", "append SQLite's query plan of each statement on collection data to this file (tests only)")
	pprofListen := flag.String("pprof-listen", "", "serve Go's profiles of the whole server (gate and FerretDB) at http://ADDR/debug/pprof/ (loopback only; for bench/db-profile.ts)")
	flag.Parse()

	if *pprofListen != "" {
		if err := servePprof(*pprofListen); err != nil {
			fmt.Fprintln(os.Stderr, "credit-kit-mongo: -pprof-listen:", err)
			os.Exit(1)
		}
	}

	if err := run(*listen, *dataDir, !*noGate, *verbose, *planLogFile); err != nil {
		fmt.Fprintln(os.Stderr, "credit-kit-mongo:", err)
		os.Exit(1)
	}
}

func run(listen, dataDir string, gate, verbose bool, planLogFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The socket lives in its own short temporary directory: Unix socket paths are limited to ~108 bytes.
	sockDir, err := os.MkdirTemp("", "ckm")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)

	if dataDir == "" {
		dataDir = filepath.Join(sockDir, "data")
	}
	if err = os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	absData, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}

	level := slog.LevelError
	if verbose {
		level = slog.LevelInfo
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	if planLogFile != "" {
		out, err := os.OpenFile(planLogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer out.Close()
		handler = &planLogHandler{next: handler, log: newPlanLog(absData, out)}
	}
	logger := slog.New(handler)

	sock := filepath.Join(sockDir, "ferretdb.sock")
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: sock},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + absData + "/",
	})
	if err != nil {
		return err
	}

	ferretDone := make(chan struct{})
	go func() {
		defer close(ferretDone)
		_ = f.Run(ctx)
	}()

	if err = waitForSocket(sock, 30*time.Second); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}

	g := &gateway{backend: sock, gate: gate, locks: newLocks()}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()

	fmt.Printf("MONGODB_URI=mongodb://%s/\n", ln.Addr().String())

	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		go g.serve(conn)
	}

	<-ferretDone
	return nil
}

func waitForSocket(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("FerretDB did not start listening within %s: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type gateway struct {
	backend string
	gate    bool
	locks   *locks
}

// serve relays one client connection. Each client connection gets its own FerretDB connection, so cursors
// and sessions stay bound as the driver expects.
func (g *gateway) serve(client net.Conn) {
	defer client.Close()

	server, err := net.Dial("unix", g.backend)
	if err != nil {
		return
	}
	defer server.Close()

	for {
		req, err := readMessage(client)
		if err != nil {
			return
		}

		if isStatsRequest(req) {
			_, err = client.Write(g.locks.statsReply(req))
		} else if g.gate {
			release := g.locks.acquire(classify(req))
			err = g.roundTrip(req, client, server)
			release()
		} else {
			err = g.roundTrip(req, client, server)
		}
		if err != nil {
			return
		}
	}
}

// roundTrip sends one request and relays its replies. The lock, when held, covers the whole exchange: the
// command has finished inside FerretDB once its reply has been read.
func (g *gateway) roundTrip(req []byte, client, server net.Conn) error {
	if _, err := server.Write(req); err != nil {
		return err
	}
	if opCode(req) == opMsg && msgFlags(req)&flagMoreToCome != 0 {
		return nil // fire-and-forget write (w:0): no reply follows
	}
	for {
		reply, err := readMessage(server)
		if err != nil {
			return err
		}
		if _, err = client.Write(reply); err != nil {
			return err
		}
		if opCode(reply) != opMsg || msgFlags(reply)&flagMoreToCome == 0 {
			return nil
		}
	}
}

func readMessage(r io.Reader) ([]byte, error) {
	var header [headerLen]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.LittleEndian.Uint32(header[:4])))
	if n < headerLen || n > maxMessageLen {
		return nil, errors.New("invalid message length")
	}
	msg := make([]byte, n)
	copy(msg, header[:])
	if _, err := io.ReadFull(r, msg[headerLen:]); err != nil {
		return nil, err
	}
	return msg, nil
}

func opCode(msg []byte) int32 { return int32(binary.LittleEndian.Uint32(msg[12:16])) }

func msgFlags(msg []byte) uint32 {
	if len(msg) < headerLen+4 {
		return 0
	}
	return binary.LittleEndian.Uint32(msg[16:20])
}
