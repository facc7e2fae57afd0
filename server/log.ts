/**
 * What the kit prints, decided in one place. Expected conditions (bad input, 401, 402, 404, 409, 429, a
 * feature that is not configured) print nothing: the answer says it all. Anything else prints one line with
 * the error's code and where it happened, and the stack only for an error the kit did not expect (a bug,
 * here or in a function the app handed it), where the stack is what helps. A database or Stripe outage
 * prints its warning once per place every OUTAGE_QUIET_MS, with a count of those it held back.
 */
import { CreditsError, toCreditsError, type CreditsErrorCode } from './errors';

export type LogLevel = 'warn' | 'error';

/** The fields of a log line, for loggers that keep structured data. */
export interface LogRecord {
  /** The kit's error code; `internal` for an error it did not expect. */
  code: CreditsErrorCode;
  /** Where it happened: `POST /api/summarize`, `background work`, `reconcile`. */
  where: string;
  /** The error itself. */
  error: unknown;
  /** Only for an error the kit did not expect: its stack. The console logger prints it below the line. */
  stack?: string;
}

/** An object with `warn` and `error`, such as `console` or a pino/winston logger wrapped to take (line, record). */
export interface CreditsLogger {
  warn(line: string, record: LogRecord): void;
  error(line: string, record: LogRecord): void;
}

/** The function form of the `logger` option. */
export type CreditsLogFunction = (level: LogLevel, line: string, record: LogRecord) => void;

/** The resolved logger: a level, a line, its fields. */
export type Log = CreditsLogFunction;

/** The default: one line on stderr through console.warn / console.error, the stack below it when there is one. */
export const consoleLog: Log = (level, line, record) => {
  const frames = record.stack ? framesOf(record.stack) : '';
  const text = frames ? `${line}\n${frames}` : line;
  if (level === 'warn') console.warn(text);
  else console.error(text);
};

export function toLog(logger: CreditsLogger | CreditsLogFunction): Log {
  if (typeof logger === 'function') return logger;
  return (level, line, record) => (level === 'warn' ? logger.warn(line, record) : logger.error(line, record));
}

/** Codes an answer explains by itself: the client's doing, or the app's choice. */
function expected(e: CreditsError): boolean {
  return e.status < 500 || e.code === 'not_configured';
}

/** Codes that say something outside the kit is unwell (the database, Stripe): a warning, not an error. */
const OUTSIDE: ReadonlySet<CreditsErrorCode> = new Set(['store_unavailable', 'payment_provider_error']);

/**
 * An outage fails every request at once: a warning of one code at one place is printed once per
 * OUTAGE_QUIET_MS, and the next one says how many like it were not printed meanwhile.
 */
export const OUTAGE_QUIET_MS = 10_000;
const quiet = new WeakMap<Log, Map<string, { until: number; held: number }>>();

/** Null when this warning falls in the quiet window of an earlier one; else the note to append. */
function outageNote(log: Log, code: CreditsErrorCode, where: string): string | null {
  let windows = quiet.get(log);
  if (!windows) quiet.set(log, (windows = new Map()));
  const key = `${code}\u0000${where}`;
  const now = Date.now();
  const w = windows.get(key);
  if (w && now < w.until) {
    w.held++;
    return null;
  }
  if (windows.size > 1000) windows.clear(); // places are routes and a few names; this only bounds memory
  windows.set(key, { until: now + OUTAGE_QUIET_MS, held: 0 });
  return w && w.held > 0 ? ` (${w.held} more like it in the last ${OUTAGE_QUIET_MS / 1000} s not printed)` : '';
}

/**
 * Logs a failure as one line, or not at all when it is expected. A log function that throws is ignored:
 * logging must never change an answer.
 */
export function logFailure(log: Log, err: unknown, where: string): void {
  try {
    logLine(log, err, where);
  } catch {
    // ignored: describing an odd value (a null-prototype object) must not throw out of an error path either
  }
}

function logLine(log: Log, err: unknown, where: string): void {
  const e = toCreditsError(err);
  if (expected(e)) return;
  // An error that is not the kit's own, or one it wrapped as `internal`, is a bug somewhere: keep its stack.
  const unknown = !(err instanceof CreditsError) ? err : e.code === 'internal' ? e.cause : undefined;
  const reason = unknown !== undefined ? describeUnknown(unknown) : withCause(e);
  const record: LogRecord = { code: e.code, where, error: err };
  if (unknown instanceof Error && unknown.stack) record.stack = unknown.stack;
  const outside = OUTSIDE.has(e.code);
  const note = outside ? outageNote(log, e.code, where) : '';
  if (note === null) return;
  const line = `[credit-kit] ${e.code} (${where}): ${reason}${note}`;
  try {
    log(outside ? 'warn' : 'error', line, record);
  } catch {
    // ignored: see above
  }
}

function withCause(e: CreditsError): string {
  const cause = e.cause;
  if (cause === undefined) return e.message;
  const text = cause instanceof Error ? cause.message : String(cause);
  return `${e.message} (${firstLine(text)})`;
}

function describeUnknown(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${firstLine(err.message)}`;
  let text: string;
  try {
    text = typeof err === 'string' ? err : String(err);
  } catch {
    text = Object.prototype.toString.call(err); // e.g. a null-prototype object: "[object Object]"
  }
  return firstLine(text);
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > 500 ? `${line.slice(0, 500)}…` : line;
}

/** The `at …` lines of a stack, without the message it starts with (already on the line). */
function framesOf(stack: string): string {
  const lines = stack.split('\n');
  const first = lines.findIndex((l) => /^\s+at /.test(l));
  return first < 0 ? '' : lines.slice(first).join('\n');
}
