// One WebSocket connection, from the upgrade to the close: waits for the welcome, matches
// replies to requests by id, watches that the server is still alive, and hands every other
// frame to its owner. It never reconnects: the client (client.ts) opens a new session.

import { ConnectionClosedError, ServerError, TimeoutError } from "./errors.js";
import {
  parseServerFrame,
  SUBPROTOCOL,
  type ClientRequest,
  type ReplyFrame,
  type ServerFrame,
  type WelcomeFrame,
} from "./protocol.js";
import { abandon, OPEN, type WebSocketConstructor, type WebSocketLike } from "./websocket.js";

/** The code a session reports when it gave up on a silent server (no close frame came). */
export const ABNORMAL_CLOSURE = 1006;

export interface SessionOptions {
  /** How long to wait for the welcome after starting the upgrade. */
  connectTimeoutMs: number;
  /** How long a request waits for its reply. */
  requestTimeoutMs: number;
  /** Every frame that is not a welcome or a reply. */
  onFrame: (frame: Exclude<ServerFrame, WelcomeFrame | ReplyFrame>) => void;
}

export interface SessionEnd {
  /** The close code; 1006 when no close frame came (the network, or a silent server). */
  code: number;
  reason: string;
}

interface Pending {
  resolve: (reply: ReplyFrame) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Session {
  readonly welcome: WelcomeFrame;
  /** Settles once, when the session ends, however it ends. */
  readonly closed: Promise<SessionEnd>;
  #resolveClosed!: (end: SessionEnd) => void;
  readonly #socket: WebSocketLike;
  readonly #options: SessionOptions;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;
  #lastHeard = Date.now();
  #heartbeat: ReturnType<typeof setInterval> | undefined;

  /**
   * Opens a connection and resolves once the welcome arrived. Rejects with a
   * `ConnectionClosedError` carrying the server's close code when it closed first (a refused
   * token: 4401, 4402, 4403), or with code 1006 when the network failed or nothing came in time.
   */
  static open(WebSocket: WebSocketConstructor, url: string, options: SessionOptions): Promise<Session> {
    return new Promise((resolve, reject) => {
      let socket: WebSocketLike;
      try {
        socket = new WebSocket(url, SUBPROTOCOL);
      } catch (error) {
        reject(error);
        return;
      }
      const fail = (code: number, reason: string) => {
        clearTimeout(timer);
        abandon(socket);
        reject(new ConnectionClosedError(code, reason));
      };
      const timer = setTimeout(
        () => fail(ABNORMAL_CLOSURE, `no welcome within ${options.connectTimeoutMs} ms`),
        options.connectTimeoutMs,
      );
      socket.onerror = () => {
        // The close event follows with the code; browsers give no detail here anyway.
      };
      socket.onclose = (event) => fail(event.code, event.reason);
      socket.onmessage = (event) => {
        const frame = parseServerFrame(String(event.data));
        if (frame?.type !== "welcome") {
          fail(ABNORMAL_CLOSURE, `the server did not start with a welcome: ${String(event.data).slice(0, 200)}`);
          return;
        }
        clearTimeout(timer);
        resolve(new Session(socket, frame, options));
      };
    });
  }

  private constructor(socket: WebSocketLike, welcome: WelcomeFrame, options: SessionOptions) {
    this.#socket = socket;
    this.welcome = welcome;
    this.#options = options;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    socket.onmessage = (event) => this.#receive(String(event.data));
    socket.onclose = (event) => this.#end(event.code, event.reason);
    this.#startHeartbeat((welcome.heartbeatSeconds ?? 20) * 1000);
  }

  get connectionId(): string {
    return this.welcome.connectionId;
  }

  /** Sends a request with an id; resolves on its reply, rejects on an error reply. */
  request(request: ClientRequest): Promise<ReplyFrame> {
    if (this.#closed || this.#socket.readyState !== OPEN) {
      return Promise.reject(new ConnectionClosedError(ABNORMAL_CLOSURE, "the connection is closing"));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new TimeoutError(`no reply to ${request.type} within ${this.#options.requestTimeoutMs} ms`));
      }, this.#options.requestTimeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#socket.send(JSON.stringify({ ...request, id }));
    });
  }

  /** Closes the connection from this side. */
  close(code = 1000, reason = ""): void {
    if (this.#closed) return;
    try {
      this.#socket.close(code, reason);
    } catch {
      abandon(this.#socket);
    }
    this.#end(code, reason);
  }

  #receive(text: string): void {
    this.#lastHeard = Date.now();
    const frame = parseServerFrame(text);
    if (!frame) return;
    switch (frame.type) {
      case "reply":
        this.#settle(frame);
        return;
      case "welcome":
        return; // Only ever first; a second one would be a server bug, and changes nothing.
      default:
        this.#options.onFrame(frame);
    }
  }

  #settle(reply: ReplyFrame): void {
    if (typeof reply.id !== "number") return;
    const pending = this.#pending.get(reply.id);
    if (!pending) return; // Timed out already.
    this.#pending.delete(reply.id);
    clearTimeout(pending.timer);
    if (reply.error) pending.reject(new ServerError(reply.error.code, reply.error.message));
    else pending.resolve(reply);
  }

  /**
   * Browsers cannot see WebSocket pings, so liveness is judged on frames: after one silent
   * heartbeat interval the client asks for a pong, and a server silent for two intervals is
   * taken for dead (docs/protocol.md, "Heartbeats") — its socket is dropped without waiting
   * for a close handshake that would never come.
   */
  #startHeartbeat(intervalMs: number): void {
    this.#heartbeat = setInterval(() => {
      const silentMs = Date.now() - this.#lastHeard;
      if (silentMs >= 2 * intervalMs) {
        abandon(this.#socket);
        this.#end(ABNORMAL_CLOSURE, `nothing heard from the server for ${Math.round(silentMs / 1000)} s`);
      } else if (silentMs >= intervalMs && this.#socket.readyState === OPEN) {
        this.#socket.send(JSON.stringify({ type: "ping" }));
      }
    }, intervalMs);
  }

  #end(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new ConnectionClosedError(code, reason));
    }
    this.#pending.clear();
    this.#resolveClosed({ code, reason });
  }
}
