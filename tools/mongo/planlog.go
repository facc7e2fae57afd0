package main

// The query-plan log (-plan-log FILE): a record of how SQLite runs each statement FerretDB sends it, so
// that a test can tell whether the `_id` index is used (tools/mongo-index.test.ts) from the plan rather
// than from a timing.
//
// FerretDB's SQL wrapper (internal/util/fsql) logs every statement at debug level just before running it,
// as the message ">>> SQL" with the attributes "name" (the database) and "args". planLogHandler sits in
// front of the normal log handler, picks those records out, asks SQLite for EXPLAIN QUERY PLAN of the same
// statement with the same arguments on a read-only connection of its own to the same database file, and
// writes one JSON line per statement: {"db": ..., "sql": ..., "plan": ["SEARCH t USING INDEX ...", ...]}.
// Only statements that read or change collection data are explained; schema and metadata statements are
// skipped. It runs before FerretDB's own statement, so a line is on disk once the reply has come back.
//
// It is for tests only: it slows every statement down.

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// explained matches the statements worth a plan: reads, updates and deletes, but not those on FerretDB's
// own metadata table or SQLite's internal ones.
var (
	explained    = regexp.MustCompile(`(?is)^\s*(SELECT|UPDATE|DELETE)\b`)
	notExplained = regexp.MustCompile(`(?i)_ferretdb_collections|\bsqlite_|\bdbstat\b`)
)

type planLog struct {
	dataDir string

	mu  sync.Mutex
	out io.Writer
	dbs map[string]*sql.DB // database name -> read-only connection pool ("sqlite" driver, as FerretDB's)
}

func newPlanLog(dataDir string, out io.Writer) *planLog {
	return &planLog{dataDir: dataDir, out: out, dbs: map[string]*sql.DB{}}
}

// record explains one statement and writes its line. Errors are written too: a missing plan must not
// look like a good one.
func (p *planLog) record(dbName, query string, args []any) {
	if dbName == "" || !explained.MatchString(query) || notExplained.MatchString(query) {
		return
	}

	p.mu.Lock()
	defer p.mu.Unlock()

	line := struct {
		DB    string   `json:"db"`
		SQL   string   `json:"sql"`
		Plan  []string `json:"plan"`
		Error string   `json:"error,omitempty"`
	}{DB: dbName, SQL: query, Plan: []string{}}

	plan, err := p.explain(dbName, query, args)
	if err != nil {
		line.Error = err.Error()
	} else {
		line.Plan = plan
	}

	b, _ := json.Marshal(line)
	_, _ = p.out.Write(append(b, '\n'))
}

func (p *planLog) explain(dbName, query string, args []any) ([]string, error) {
	db := p.dbs[dbName]
	if db == nil {
		// Database names are file names (FerretDB's SQLite backend stores database X in X.sqlite).
		uri := "file:" + filepath.Join(p.dataDir, dbName+".sqlite") + "?mode=ro&_pragma=busy_timeout(10000)"

		var err error
		if db, err = sql.Open("sqlite", uri); err != nil {
			return nil, err
		}

		p.dbs[dbName] = db
	}

	rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	var plan []string

	for rows.Next() {
		var id, parent, notUsed int
		var detail string

		if err = rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			return nil, err
		}

		plan = append(plan, detail)
	}

	return plan, rows.Err()
}

// planLogHandler passes every record on to next (when next wants it) and hands FerretDB's statement
// records to the plan log.
type planLogHandler struct {
	next  slog.Handler
	log   *planLog
	attrs []slog.Attr // attributes added with Logger.With, where fsql puts "name" and "args"
}

func (h *planLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level <= slog.LevelDebug || h.next.Enabled(ctx, level)
}

func (h *planLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelDebug && strings.HasPrefix(r.Message, ">>> ") {
		var dbName string
		var args []any

		for _, a := range h.attrs {
			switch a.Key {
			case "name":
				dbName = a.Value.String()
			case "args":
				args, _ = a.Value.Any().([]any)
			}
		}

		h.log.record(dbName, strings.TrimPrefix(r.Message, ">>> "), args)
	}

	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}

	return h.next.Handle(ctx, r)
}

func (h *planLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &planLogHandler{
		next:  h.next.WithAttrs(attrs),
		log:   h.log,
		attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...),
	}
}

func (h *planLogHandler) WithGroup(name string) slog.Handler {
	// Attributes in a group are not fsql's; keep ours as they are.
	return &planLogHandler{next: h.next.WithGroup(name), log: h.log, attrs: h.attrs}
}
