/**
 * A fault-injecting TCP proxy for the MongoDB wire protocol, for the reliability suite: it sits between the
 * driver and a MongoDB-compatible server and stalls, delays, loses replies or resets connections on
 * command, so tests can attack the kit's money handling with the faults a real network produces ("the write
 * landed but its reply was lost", "the write arrived long after its client gave up").
 *
 *   const proxy = await startFaultProxy(process.env.MONGODB_URI!, { seed: 7 });
 *   const client = new MongoClient(proxy.uri, { directConnection: true, retryWrites: false });
 *   proxy.dropNextReplies(1, ['findAndModify']);
 *
 * Each accepted client connection gets its own upstream connection (so cursors and sessions stay bound as
 * the driver expects). Messages are framed by their length prefix (TCP chunks need not align with them),
 * the command name is read from OP_MSG (and from the legacy OP_QUERY the driver's handshake uses, and from
 * OP_COMPRESSED with the noop or zlib compressor), and replies are matched to requests by responseTo, so a
 * fault can target commands by name in either direction. Requests with the moreToCome flag expect no reply;
 * exhaust replies (moreToCome on a reply) chain: the next reply answers the previous reply's requestID.
 *
 * Relay only, no dependencies beyond `node:net` and `node:zlib`. Point the driver at `proxy.uri` with
 * `directConnection: true`: the proxy relays to a single server, and a driver that discovered a replica
 * set's members from `hello` would connect to them around it.
 */
import net, { type AddressInfo } from 'node:net';
import { inflateSync } from 'node:zlib';
import { mulberry32 } from './prng';

/** Which commands a fault applies to: a predicate on the command name, or a list of names. */
export type CommandFilter = ((command: string) => boolean) | readonly string[];

/**
 * Handshake, monitoring and session bookkeeping commands. The default filter of every fault is "every command
 * but these" (the data commands), so that connection monitoring keeps working while data commands suffer.
 */
export const CONTROL_COMMANDS: readonly string[] = [
  'hello',
  'isMaster',
  'ismaster',
  'ping',
  'buildInfo',
  'buildinfo',
  'saslStart',
  'saslContinue',
  'endSessions',
  'getParameter',
  'whatsmyuri',
];

const CONTROL = new Set(CONTROL_COMMANDS);

/** The default filter: every command except {@link CONTROL_COMMANDS}. */
export const dataCommands = (command: string): boolean => !CONTROL.has(command);

export interface FaultProxyOptions {
  /** Seed of the PRNG that `random()` draws from (mulberry32); the same seed gives the same decisions. Default 1. */
  seed?: number;
  /**
   * What happens to messages still held by a stall (or a random stall) on a connection whose client side
   * closed meanwhile (the driver timed out and destroyed the socket, say). `true` (the default): they are
   * still delivered to the server when released, as bytes already in flight would be, so a write lands
   * after its client gave up; the upstream connection stays open until their replies have arrived, and the
   * replies are discarded. `false`: they are discarded and the upstream connection closes at once, as if the
   * bytes never left the client.
   */
  deliverAfterClientClose?: boolean;
}

/** Random faults, decided per matching client→server command from the seeded PRNG. */
export interface RandomFaultConfig {
  /** Chance that a command (and everything behind it on its connection) is held for a random `stallMs`. */
  stallProbability?: number;
  /** Range of a random stall in ms, [min, max]; default [100, 1000]. */
  stallMs?: [number, number];
  /** Chance that a command is forwarded, its reply discarded and the client connection reset. */
  dropReplyProbability?: number;
  /**
   * Chance that the connection is reset (both sides destroyed) as the command arrives: the command never
   * reaches the server, nor does anything held behind it.
   */
  resetProbability?: number;
  /** A latency added to every matching command, drawn from [min, max] ms; default none. */
  delayMs?: [number, number];
  /** Which commands are subject to these faults; default {@link dataCommands}. */
  filter?: CommandFilter;
  /** Reseed the PRNG (otherwise it continues from where it is, starting from `options.seed`). */
  seed?: number;
}

/** One random decision, in the order commands arrived. */
export interface FaultDecision {
  /** 1-based position among the commands `random()` decided on since the proxy started. */
  seq: number;
  command: string;
  reset: boolean;
  dropReply: boolean;
  /** Random stall in ms (0: none). */
  stallMs: number;
  /** Random latency in ms (0: none). */
  delayMs: number;
}

export interface FaultStats {
  /** Client→server messages seen (every command, control ones included). */
  commands: number;
  /** Messages held by `stall()` or by a random stall or delay (not counting those merely queued behind one). */
  stalled: number;
  /** Replies discarded by `dropNextReplies()` or a random drop. */
  repliesDropped: number;
  /** Connections reset by `resetAll()` or a random reset. */
  resets: number;
  /** Client→server messages per command name ('?' when no name could be read). */
  byCommand: Record<string, number>;
  /** Client connections open now (the proxy notices a client's close a moment after the client made it). */
  openConnections: number;
}

export interface FaultProxy {
  /** `mongodb://127.0.0.1:PORT/`, keeping the target URI's credentials, database path and query string. */
  readonly uri: string;
  /** Port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /**
   * From now on, client→server messages matching `filter` (default: data commands) are held, not forwarded,
   * until `release()`. Later messages on the same connection queue behind a held one, so order per
   * connection is kept. A stalled link delivers late: after `release()` a write lands even if its client gave
   * up long before (see {@link FaultProxyOptions.deliverAfterClientClose}). Calling it again replaces the filter.
   */
  stall(filter?: CommandFilter): void;
  /** Forwards everything held (by `stall()` and by random stalls and delays), in order, and stops stalling. */
  release(): void;
  /**
   * The same in the server→client direction: replies to commands matching `filter` are held until
   * `releaseReplies()`: the command ran, its reply is late. Replies behind a held one on its connection wait too.
   */
  stallReplies(filter?: CommandFilter): void;
  /** Delivers every held reply, in order, and stops stalling replies. */
  releaseReplies(): void;
  /**
   * For the next `n` commands matching `filter` (default: data commands) that expect a reply: forward the
   * command, wait for its reply, discard the reply and reset the client connection: a write that lands
   * while its reply is lost. Replaces any count still pending.
   */
  dropNextReplies(n: number, filter?: CommandFilter): void;
  /** Destroys every connection, both sides, at once (a connection reset). Held messages are discarded. */
  resetAll(): void;
  /** Random faults from the seeded PRNG for every matching command from now on; `null` turns them off. */
  random(config: RandomFaultConfig | null): void;
  /** The decisions `random()` made, oldest first (the last 10,000). */
  decisions(): FaultDecision[];
  stats(): FaultStats;
  /** Closes the listener and every connection; held messages are discarded. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Wire protocol

const OP_REPLY = 1;
const OP_QUERY = 2004;
const OP_COMPRESSED = 2012;
const OP_MSG = 2013;
const HEADER_LEN = 16;
const MAX_MESSAGE_LEN = 48 * 1024 * 1024; // MongoDB's maxMessageSizeBytes
const FLAG_CHECKSUM_PRESENT = 1 << 0;
const FLAG_MORE_TO_COME = 1 << 1;

interface WireInfo {
  requestID: number;
  responseTo: number;
  /** The opCode of the message proper (the original one for OP_COMPRESSED, when it could be read). */
  opCode: number;
  /** OP_MSG flagBits (0 for other opCodes). */
  flags: number;
  /** Command name, '' for replies, '?' when it could not be read. */
  command: string;
}

/** Reads a NUL-terminated string at `p`; null if it runs past the end. */
function cstring(buf: Buffer, p: number): { value: string; end: number } | null {
  const end = buf.indexOf(0, p);
  if (end < 0) return null;
  return { value: buf.toString('utf8', p, end), end: end + 1 };
}

/** The name of the first element of the BSON document at `p` (the command name), or null. */
function firstKey(buf: Buffer, p: number, depth = 0): string | null {
  if (p + 5 > buf.length) return null;
  const type = buf[p + 4]!;
  if (type === 0) return null; // empty document
  const key = cstring(buf, p + 5);
  if (!key) return null;
  // Legacy OP_QUERY may wrap the command: { $query: { cmd: 1 }, $readPreference: ... }.
  if (depth === 0 && type === 0x03 && (key.value === '$query' || key.value === 'query')) {
    return firstKey(buf, key.end, 1) ?? key.value;
  }
  return key.value;
}

/** The command name of an OP_MSG body (from HEADER_LEN on), or null. */
function opMsgCommand(msg: Buffer, flags: number): string | null {
  const end = flags & FLAG_CHECKSUM_PRESENT ? msg.length - 4 : msg.length;
  let p = HEADER_LEN + 4;
  while (p < end) {
    const kind = msg[p]!;
    p++;
    if (kind === 0) return firstKey(msg, p);
    if (kind !== 1 || p + 4 > end) return null;
    const size = msg.readInt32LE(p); // document sequence: int32 size (including itself), identifier, documents
    if (size < 5) return null;
    p += size;
  }
  return null;
}

/** Parses what the proxy needs of a message (the header, flags and command name). */
function inspect(msg: Buffer): WireInfo {
  const info: WireInfo = {
    requestID: msg.readInt32LE(4),
    responseTo: msg.readInt32LE(8),
    opCode: msg.readInt32LE(12),
    flags: 0,
    command: '?',
  };
  let body = msg;
  if (info.opCode === OP_COMPRESSED && msg.length >= HEADER_LEN + 9) {
    // originalOpcode, uncompressedSize, compressorId, compressed message (without its header)
    info.opCode = msg.readInt32LE(16);
    const compressor = msg[24]!;
    const payload = msg.subarray(25);
    let inner: Buffer | null = null;
    try {
      if (compressor === 0) inner = payload;
      else if (compressor === 2) inner = inflateSync(payload);
    } catch {
      inner = null;
    }
    if (!inner) return info; // snappy / zstd: only the opCode is known
    body = Buffer.concat([msg.subarray(0, HEADER_LEN), inner]);
  }
  try {
    if (info.opCode === OP_MSG && body.length >= HEADER_LEN + 4) {
      info.flags = body.readUInt32LE(HEADER_LEN);
      info.command = opMsgCommand(body, info.flags) ?? (info.responseTo !== 0 ? '' : '?');
    } else if (info.opCode === OP_QUERY) {
      // flags, fullCollectionName, numberToSkip, numberToReturn, query
      const ns = cstring(body, HEADER_LEN + 4);
      info.command = (ns && firstKey(body, ns.end + 8)) ?? '?';
    } else if (info.opCode === OP_REPLY) {
      info.command = '';
    }
  } catch {
    // a malformed body: leave what we have
  }
  return info;
}

/** Buffers one direction of a connection and cuts it into whole messages. */
class Framer {
  private chunks: Buffer[] = [];
  private size = 0;
  private need = 0;

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.need === 0) {
        if (this.size < 4) break;
        const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
        const n = head.readInt32LE(0);
        if (n < HEADER_LEN || n > MAX_MESSAGE_LEN) throw new Error(`invalid message length ${n}`);
        this.need = n;
      }
      if (this.size < this.need) break;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
      out.push(all.subarray(0, this.need));
      const rest = all.subarray(this.need);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.size = rest.length;
      this.need = 0;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Proxy


function toPredicate(filter: CommandFilter | undefined): (command: string) => boolean {
  if (filter === undefined) return dataCommands;
  if (typeof filter === 'function') return filter;
  const names = new Set(filter);
  return (command) => names.has(command);
}

interface Pending {
  command: string;
  dropReply: boolean;
  /** An exhaust stream (the server keeps replying with moreToCome): no end to wait for. */
  streaming: boolean;
}

interface Held {
  bytes: Buffer;
  /** Held by stall() / stallReplies() until release. */
  stalled: boolean;
  /** Held by a random stall or delay until this timer fires. */
  timer: NodeJS.Timeout | null;
}

interface Link {
  client: net.Socket;
  upstream: net.Socket;
  c2s: Framer;
  s2c: Framer;
  toServer: Held[];
  toClient: Held[];
  pending: Map<number, Pending>;
  clientClosed: boolean;
  upstreamClosed: boolean;
  /** Safety net: an upstream kept open for in-flight bytes is closed after this fires. */
  lingerTimer: NodeJS.Timeout | null;
}

/** How long an upstream stays open, once its client left and its held messages went out, for their replies. */
const LINGER_MS = 30_000;
const MAX_DECISIONS = 10_000;

function parseTarget(targetUri: string): { host: string; port: number; userinfo: string; path: string; query: string } {
  const m = /^mongodb:\/\/(?:([^@/?]*)@)?([^/?]+)(\/[^?]*)?(\?.*)?$/.exec(targetUri);
  if (!m) throw new Error(`fault proxy: expected a mongodb:// URI, got ${targetUri}`);
  const hosts = m[2]!.split(',');
  if (hosts.length !== 1) throw new Error(`fault proxy: relays to one server, but ${targetUri} names ${hosts.length}`);
  const hp = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(hosts[0]!);
  if (!hp) throw new Error(`fault proxy: cannot read host:port in ${targetUri}`);
  return {
    host: decodeURIComponent(hp[1] ?? hp[2]!),
    port: hp[3] ? Number(hp[3]) : 27017,
    userinfo: m[1] !== undefined ? `${m[1]}@` : '',
    path: m[3] ?? '/',
    query: m[4] ?? '',
  };
}

/** Destroys a socket with a TCP RST where that is safe, as a real connection reset would. */
function hardClose(socket: net.Socket): void {
  if (socket.destroyed) return;
  // Node's resetAndDestroy() on a socket whose write side was already ended (Node ends it by itself when the
  // peer sends FIN) mixes uv_shutdown with uv_tcp_close_reset, which libuv forbids: the handle never finishes
  // closing and the process spins at 100% CPU at exit (Node 20). Such a socket gets a plain destroy().
  if (socket.connecting || socket.writableEnded || socket.readyState !== 'open') {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Starts the proxy on 127.0.0.1 and a free port, relaying to the server of `targetUri`. */
export async function startFaultProxy(targetUri: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const target = parseTarget(targetUri);
  const deliverAfterClientClose = options.deliverAfterClientClose ?? true;
  let rand = mulberry32(options.seed ?? 1);

  const links = new Set<Link>();
  let stallFilter: ((c: string) => boolean) | null = null;
  let replyStallFilter: ((c: string) => boolean) | null = null;
  let dropRemaining = 0;
  let dropFilter: (c: string) => boolean = dataCommands;
  let randomConfig: (RandomFaultConfig & { match: (c: string) => boolean }) | null = null;
  const decisionLog: FaultDecision[] = [];
  let decisionSeq = 0;
  const counters = { commands: 0, stalled: 0, repliesDropped: 0, resets: 0 };
  const byCommand: Record<string, number> = {};

  function clearHeld(queue: Held[]): void {
    for (const h of queue) if (h.timer) clearTimeout(h.timer);
    queue.length = 0;
  }

  function forget(link: Link): void {
    if (!link.clientClosed || !link.upstreamClosed) return;
    if (link.lingerTimer) clearTimeout(link.lingerTimer);
    links.delete(link);
  }

  /** Destroys both sides of a link now, discarding whatever it holds. */
  function reset(link: Link): void {
    clearHeld(link.toServer);
    clearHeld(link.toClient);
    link.pending.clear();
    hardClose(link.client);
    hardClose(link.upstream);
  }

  /** Ends the upstream of a link whose client left once nothing it carries is still in flight. */
  function maybeEndUpstream(link: Link): void {
    if (!link.clientClosed || link.upstreamClosed || link.toServer.length > 0) return;
    for (const p of link.pending.values()) {
      if (p.streaming) continue;
      // Still waiting for a reply: give it a while, then close regardless.
      if (!link.lingerTimer) {
        link.lingerTimer = setTimeout(() => link.upstream.destroy(), LINGER_MS);
        link.lingerTimer.unref();
      }
      return;
    }
    link.upstream.destroy();
  }

  function write(from: net.Socket, to: net.Socket, bytes: Buffer): void {
    if (to.destroyed || !to.writable) return;
    if (!to.write(bytes) && !from.isPaused()) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  }

  function flushToServer(link: Link): void {
    const q = link.toServer;
    while (q.length > 0 && !q[0]!.stalled && !q[0]!.timer) {
      const h = q.shift()!;
      write(link.client, link.upstream, h.bytes);
    }
    maybeEndUpstream(link);
  }

  function flushToClient(link: Link): void {
    const q = link.toClient;
    while (q.length > 0 && !q[0]!.stalled && !q[0]!.timer) {
      const h = q.shift()!;
      write(link.upstream, link.client, h.bytes);
    }
    if (link.upstreamClosed && q.length === 0) link.client.destroy();
  }

  function decide(command: string, expectsReply: boolean): FaultDecision | null {
    const cfg = randomConfig;
    if (!cfg || !cfg.match(command)) return null;
    // Always five draws per command, whatever the config, so decisions stay aligned across configs.
    const [rReset, rDrop, rStall, rStallLen, rDelay] = [rand(), rand(), rand(), rand(), rand()];
    const reset = rReset < (cfg.resetProbability ?? 0);
    const stall = !reset && rStall < (cfg.stallProbability ?? 0);
    const [smin, smax] = cfg.stallMs ?? [100, 1000];
    const decision: FaultDecision = {
      seq: ++decisionSeq,
      command,
      reset,
      dropReply: !reset && expectsReply && rDrop < (cfg.dropReplyProbability ?? 0),
      stallMs: stall ? Math.round(smin + (smax - smin) * rStallLen) : 0,
      delayMs: !reset && cfg.delayMs ? Math.round(cfg.delayMs[0] + (cfg.delayMs[1] - cfg.delayMs[0]) * rDelay) : 0,
    };
    decisionLog.push(decision);
    if (decisionLog.length > MAX_DECISIONS) decisionLog.shift();
    return decision;
  }

  function onClientMessage(link: Link, bytes: Buffer): void {
    const info = inspect(bytes);
    counters.commands++;
    byCommand[info.command] = (byCommand[info.command] ?? 0) + 1;
    const expectsReply = !(info.opCode === OP_MSG && info.flags & FLAG_MORE_TO_COME);

    const decision = decide(info.command, expectsReply);
    if (decision?.reset) {
      counters.resets++;
      reset(link);
      return;
    }
    let dropReply = decision?.dropReply ?? false;
    if (!dropReply && expectsReply && dropRemaining > 0 && dropFilter(info.command)) {
      dropRemaining--;
      dropReply = true;
    }
    if (expectsReply) {
      link.pending.set(info.requestID, { command: info.command, dropReply, streaming: false });
    }

    const held: Held = { bytes, stalled: stallFilter?.(info.command) ?? false, timer: null };
    const holdMs = (decision?.stallMs ?? 0) + (decision?.delayMs ?? 0);
    if (holdMs > 0) {
      held.timer = setTimeout(() => {
        held.timer = null;
        flushToServer(link);
      }, holdMs);
    }
    if (held.stalled || held.timer) counters.stalled++;
    link.toServer.push(held);
    flushToServer(link);
  }

  function onServerMessage(link: Link, bytes: Buffer): void {
    const info = inspect(bytes);
    const pending = link.pending.get(info.responseTo);
    link.pending.delete(info.responseTo);
    if (pending && info.opCode === OP_MSG && info.flags & FLAG_MORE_TO_COME) {
      // Exhaust: the server will send another reply, answering this one's requestID.
      pending.streaming = true;
      link.pending.set(info.requestID, pending);
    }
    if (pending?.dropReply) {
      pending.dropReply = false;
      counters.repliesDropped++;
      clearHeld(link.toClient);
      hardClose(link.client);
      maybeEndUpstream(link);
      return;
    }
    if (link.clientClosed) {
      maybeEndUpstream(link);
      return;
    }
    const command = pending?.command ?? '?';
    link.toClient.push({ bytes, stalled: replyStallFilter?.(command) ?? false, timer: null });
    flushToClient(link);
  }

  function onConnection(client: net.Socket): void {
    client.setNoDelay(true);
    const upstream = net.connect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    const link: Link = {
      client,
      upstream,
      c2s: new Framer(),
      s2c: new Framer(),
      toServer: [],
      toClient: [],
      pending: new Map(),
      clientClosed: false,
      upstreamClosed: false,
      lingerTimer: null,
    };
    links.add(link);

    client.on('data', (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = link.c2s.push(chunk);
      } catch {
        reset(link);
        return;
      }
      for (const m of messages) {
        if (client.destroyed) break; // a random reset
        onClientMessage(link, m);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = link.s2c.push(chunk);
      } catch {
        reset(link);
        return;
      }
      for (const m of messages) onServerMessage(link, m);
    });
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);

    client.on('close', () => {
      link.clientClosed = true;
      clearHeld(link.toClient);
      if (!deliverAfterClientClose) {
        clearHeld(link.toServer);
        link.upstream.destroy();
      } else {
        maybeEndUpstream(link);
      }
      forget(link);
    });
    upstream.on('close', () => {
      link.upstreamClosed = true;
      clearHeld(link.toServer);
      link.pending.clear();
      // Replies already read are still delivered (once released); then the client sees the close.
      if (link.toClient.length === 0) link.client.destroy();
      forget(link);
    });
  }

  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    uri: `mongodb://${target.userinfo}127.0.0.1:${port}${target.path}${target.query}`,
    port,
    stall(filter) {
      stallFilter = toPredicate(filter);
    },
    release() {
      stallFilter = null;
      for (const link of [...links]) {
        for (const h of link.toServer) {
          h.stalled = false;
          if (h.timer) clearTimeout(h.timer);
          h.timer = null;
        }
        flushToServer(link);
      }
    },
    stallReplies(filter) {
      replyStallFilter = toPredicate(filter);
    },
    releaseReplies() {
      replyStallFilter = null;
      for (const link of [...links]) {
        for (const h of link.toClient) h.stalled = false;
        flushToClient(link);
      }
    },
    dropNextReplies(n, filter) {
      dropRemaining = Math.max(0, Math.floor(n));
      dropFilter = toPredicate(filter);
    },
    resetAll() {
      for (const link of [...links]) {
        if (!link.clientClosed || !link.upstreamClosed) counters.resets++;
        reset(link);
      }
    },
    random(config) {
      if (config?.seed !== undefined) rand = mulberry32(config.seed);
      randomConfig = config ? { ...config, match: toPredicate(config.filter) } : null;
    },
    decisions() {
      return decisionLog.map((d) => ({ ...d }));
    },
    stats() {
      let openConnections = 0;
      for (const link of links) if (!link.clientClosed) openConnections++;
      return { ...counters, byCommand: { ...byCommand }, openConnections };
    },
    async close() {
      randomConfig = null;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const link of [...links]) reset(link);
      await closed;
    },
  };
}
