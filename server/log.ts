/**
 * What the kit prints, decided in one place. Expected conditions (bad input, 401, 402, 404, 409, 429, a
 * feature that is not configured) print nothing: the answer says it all. Anything else prints one line with
 * the error's code and where it happened, and the stack only for an error the kit did not expect (a bug,
 * here or in a function the app handed it), where the stack is what helps.
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
 * Logs a failure as one line, or not at all when it is expected. A log function that throws is ignored:
 * logging must never change an answer.
 */
export function logFailure(log: Log, err: unknown, where: string): void {
  const e = toCreditsError(err);
  if (expected(e)) return;
  // An error that is not the kit's own, or one it wrapped as `internal`, is a bug somewhere: keep its stack.
  const unknown = !(err instanceof CreditsError) ? err : e.code === 'internal' ? e.cause : undefined;
  const reason = unknown !== undefined ? describeUnknown(unknown) : withCause(e);
  const record: LogRecord = { code: e.code, where, error: err };
  if (unknown instanceof Error && unknown.stack) record.stack = unknown.stack;
  const line = `[credit-kit] ${e.code} (${where}): ${reason}`;
  try {
    log(OUTSIDE.has(e.code) ? 'warn' : 'error', line, record);
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
  return firstLine(typeof err === 'string' ? err : String(err));
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
