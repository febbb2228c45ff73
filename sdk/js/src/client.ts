// The realtime client: one logical connection that stays up. It reconnects by itself
// (exponential backoff with full jitter; at once when a node drains; with a new token when the
// server refuses the old one), joins again the groups the application joined, recovers every
// group with history from the last position it delivered, and tells the application what it
// could not recover. Each physical connection is a `Session` (session.ts).

import { Backoff, type BackoffOptions } from "./backoff.js";
import { closeAction, type CloseAction } from "./close-codes.js";
import { Emitter, type Unsubscribe } from "./emitter.js";
import { ConnectionClosedError, NotConnectedError, ServerError, SignalboxError, TokenProviderError } from "./errors.js";
import { GroupTracker } from "./groups.js";
import type {
  GroupRecovery,
  RecoveryReason,
  Json,
  MessageFrame,
  PresenceChange,
  PresenceSnapshot,
  ReplyFrame,
  ServerFrame,
  WelcomeFrame,
} from "./protocol.js";
import { Session } from "./session.js";
import { TokenSource, type TokenProvider } from "./token.js";
import { resolveWebSocket, type WebSocketConstructor } from "./websocket.js";

export interface ClientOptions {
  /** The edge's client endpoint, `wss://HOST/client` (`ws://127.0.0.1:8080/client` locally). */
  url: string;
  /** A fixed client token. A client with only this gives up when the server refuses it. */
  token?: string;
  /** Returns a client token: called before every (re)connect and shortly before `exp`. */
  tokenProvider?: TokenProvider;
  /** The WebSocket implementation (default: the global one, else the `ws` package). */
  WebSocket?: WebSocketConstructor;
  /** Bounds of the reconnect backoff. */
  reconnect?: BackoffOptions;
  /** How long a request waits for its reply (default 10 s). */
  requestTimeoutMs?: number;
  /** How long a connection attempt waits for the server's welcome (default 10 s). */
  connectTimeoutMs?: number;
  /** Seconds before the token's `exp` to get a new one (default 60, at most a fifth of its lifetime). */
  tokenRefreshMarginSeconds?: number;
}

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "disconnected";

/** A delivered message. `data` is a `Uint8Array` when the publisher sent binary data. */
export interface Message<T = unknown> {
  event: string;
  data: T;
  /** The group it was published to; absent for messages to a user, a connection or everyone. */
  group?: string;
  /** Its position, in a group with history. */
  seq?: number;
}

export interface ConnectedEvent {
  connectionId: string;
  userId?: string;
  /** False for the first connection, true for every reconnect. */
  reconnected: boolean;
}

export interface ReconnectingEvent {
  /** Why the last connection or attempt ended (1006: no close frame, e.g. the network). */
  code: number;
  reason: string;
  /** How long the client waits before the next attempt (0: at once). */
  delayMs: number;
  /** Attempts that failed in a row since the last successful connection. */
  failures: number;
}

export interface DisconnectedEvent {
  code: number;
  reason: string;
}

/** What a reconnect recovered: `recovered` is false when any group could not be. */
export interface RecoveryEvent {
  recovered: boolean;
  groups: GroupRecovery[];
}

/**
 * Who joined and left a group (`members` mode) and its number of connections (both modes).
 * Note: `count` here counts connections, while a `presence()` snapshot's `count` counts users.
 */
export interface PresenceEvent {
  group: string;
  joined?: PresenceChange[];
  left?: PresenceChange[];
  /** The lists were cut: query `presence(group)` for the whole picture. */
  truncated?: boolean;
  /** The group's connections, anonymous ones included. */
  count?: number;
}

export interface ClientEvents {
  state: { state: ConnectionState; previous: ConnectionState };
  connecting: { failures: number };
  connected: ConnectedEvent;
  reconnecting: ReconnectingEvent;
  disconnected: DisconnectedEvent;
  recovery: RecoveryEvent;
  /** Every message (the catch-all); `onMessage(event, …)` picks one event name. */
  message: Message;
  presence: PresenceEvent;
  /** Errors nobody awaits: failed rejoins, `error` frames, token refresh failures. */
  error: SignalboxError;
}

export interface JoinOptions {
  /** Replay what was stored after this position first (groups with history). */
  since?: number;
}

/** The answer to a join with `since`. */
export interface JoinResult {
  recovered?: boolean;
  reason?: RecoveryReason;
  message?: string;
}

export interface PublishOptions {
  /** Do not deliver the message back to this connection. */
  noEcho?: boolean;
}

export interface PublishResult {
  /** Where the message was stored, in a group with history. */
  position?: number;
}

const CLOSED_BY_CLIENT = "closed by the client";

export class SignalboxClient {
  readonly #url: string;
  readonly #options: ClientOptions;
  readonly #events = new Emitter<ClientEvents>();
  /** Handlers of one event name each (`onMessage`), keyed by the message's event name. */
  readonly #messageEvents = new Emitter<Record<string, Message>>();
  readonly #groups = new GroupTracker();
  readonly #tokens: TokenSource;
  readonly #backoff: Backoff;
  #state: ConnectionState = "idle";
  #session: Session | undefined;
  #everConnected = false;
  #closing = false;
  /** Callers of `connect()` waiting for the next welcome (or for the client to give up). */
  #connectWaiters: Array<{ resolve: (welcome: WelcomeFrame) => void; reject: (error: Error) => void }> = [];
  /** Cuts a backoff wait short when the application closes the client. */
  #wake: (() => void) | undefined;
  /** Set when the server sent a `reconnect` frame: the session's end means "reconnect now". */
  #drainRequested = false;

  constructor(options: ClientOptions) {
    this.#url = normalizeUrl(options.url);
    this.#options = options;
    this.#tokens = new TokenSource({
      token: options.token,
      tokenProvider: options.tokenProvider,
      refreshMarginSeconds: options.tokenRefreshMarginSeconds,
      onRefreshError: (error) => this.#events.emit("error", new TokenProviderError(error)),
    });
    this.#backoff = new Backoff(options.reconnect);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** The current connection's id, while connected. */
  get connectionId(): string | undefined {
    return this.#session?.connectionId;
  }

  /** The user the token names, while connected. */
  get userId(): string | undefined {
    return this.#session?.welcome.userId;
  }

  /** The last position delivered per group with history (what a reconnect recovers from). */
  positions(): Record<string, number> {
    return this.#groups.positions();
  }

  /**
   * Starts connecting (once) and resolves on the next welcome. Keeps trying through network
   * failures; rejects only when the client gives up (a close code that says so, a refused
   * fixed token) or is closed.
   */
  connect(): Promise<ConnectedEvent> {
    if (this.#state === "disconnected") {
      return Promise.reject(new ConnectionClosedError(1000, "this client was closed; create a new one"));
    }
    if (this.#state === "connected" && this.#session) return Promise.resolve(this.#connectedEvent(this.#session));
    const welcome = new Promise<WelcomeFrame>((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
    if (this.#state === "idle") void this.#run();
    return welcome.then((frame) => ({
      connectionId: frame.connectionId,
      ...(frame.userId !== undefined && { userId: frame.userId }),
      reconnected: false,
    }));
  }

  /** Closes for good: no reconnect; pending requests fail with `ConnectionClosedError`. */
  close(): void {
    if (this.#state === "disconnected") return;
    this.#closing = true;
    this.#wake?.();
    this.#session?.close(1000, CLOSED_BY_CLIENT);
    this.#finish(1000, CLOSED_BY_CLIENT);
  }

  on<K extends keyof ClientEvents>(name: K, handler: (payload: ClientEvents[K]) => void): Unsubscribe {
    return this.#events.on(name, handler);
  }

  off<K extends keyof ClientEvents>(name: K, handler: (payload: ClientEvents[K]) => void): void {
    this.#events.off(name, handler);
  }

  /** Handles the messages of one event name (`on('message', …)` gets all of them). */
  onMessage<T = unknown>(event: string, handler: (message: Message<T>) => void): Unsubscribe {
    return this.#messageEvents.on(event, handler as (message: Message) => void);
  }

  /** Joins a group, now and after every reconnect (recovering it when it has history). */
  async join(group: string, options: JoinOptions = {}): Promise<JoinResult> {
    const since = options.since;
    const reply = await this.#request({ type: "join", group, ...(since !== undefined && { since }) });
    this.#groups.joined(group, since);
    return {
      ...(reply.recovered !== undefined && { recovered: reply.recovered }),
      ...(reply.reason !== undefined && { reason: reply.reason }),
      ...(reply.message !== undefined && { message: reply.message }),
    };
  }

  /** Leaves a group; it is forgotten at once, so a reconnect does not join it again. */
  async leave(group: string): Promise<void> {
    this.#groups.left(group);
    await this.#request({ type: "leave", group });
  }

  /** Publishes to a group; resolves once the server accepted (and, with history, stored) it. */
  async publish(group: string, event: string, data: Json, options: PublishOptions = {}): Promise<PublishResult> {
    const noEcho = options.noEcho === true ? { noEcho: true } : {};
    const reply = await this.#request({ type: "publish", group, event, data, ...noEcho });
    return reply.position !== undefined ? { position: reply.position } : {};
  }

  /**
   * Sends a client event to the app's backend (its webhook); resolves with the backend's
   * answer. Rejects with `no_upstream` when the app has no webhook for events.
   */
  async send(event: string, data: Json): Promise<Json | undefined> {
    const reply = await this.#request({ type: "event", event, data });
    return reply.data;
  }

  /** Who is in a group (allowed for groups the token may join). */
  async presence(group: string): Promise<PresenceSnapshot> {
    const reply = await this.#request({ type: "presence", group });
    if (!reply.presence) throw new SignalboxError("bad_reply", "the presence reply carries no presence");
    return reply.presence;
  }

  /** A round trip to the server. */
  async ping(): Promise<void> {
    await this.#request({ type: "ping" });
  }

  #request(request: Parameters<Session["request"]>[0]): Promise<ReplyFrame> {
    const session = this.#session;
    if (!session) return Promise.reject(new NotConnectedError(`not connected (${this.#state})`));
    return session.request(request);
  }

  /** The connection loop: one iteration per connection attempt. */
  async #run(): Promise<void> {
    let WebSocket: WebSocketConstructor;
    try {
      WebSocket = await resolveWebSocket(this.#options.WebSocket);
    } catch (error) {
      this.#events.emit("error", error as SignalboxError);
      this.#finish(1006, (error as Error).message);
      return;
    }
    /** Attempts that failed in a row; 0 after a connection that was established. */
    let failures = 0;
    /** Whether the server refused the last token: the next one must be new. */
    let reauthenticate = false;
    let ended: DisconnectedEvent | undefined;
    let immediate = false;
    while (!this.#closing) {
      if (ended) {
        const delayMs = immediate ? 0 : this.#backoff.delay(Math.max(failures, 1));
        this.#setState("reconnecting");
        this.#events.emit("reconnecting", { ...ended, delayMs, failures });
        await this.#sleep(delayMs);
        if (this.#closing) return;
      }
      this.#setState("connecting");
      this.#events.emit("connecting", { failures });

      const token = await this.#token(reauthenticate);
      if (this.#closing) return;
      if (token === undefined) {
        failures += 1;
        immediate = false;
        ended = { code: 4401, reason: "no token: the token provider failed" };
        continue;
      }

      const plan = this.#groups.plan();
      let session: Session;
      try {
        session = await Session.open(WebSocket, this.#connectUrl(token, plan.recover), {
          connectTimeoutMs: this.#options.connectTimeoutMs ?? 10_000,
          requestTimeoutMs: this.#options.requestTimeoutMs ?? 10_000,
          onFrame: (frame) => this.#receive(frame),
        });
      } catch (error) {
        if (this.#closing) return;
        ended = closure(error);
        const action = closeAction(ended.code);
        if (this.#givesUp(action)) {
          this.#finish(ended.code, ended.reason);
          return;
        }
        reauthenticate = action === "reauthenticate";
        failures += 1;
        immediate = false;
        continue;
      }
      if (this.#closing) {
        session.close(1000, CLOSED_BY_CLIENT);
        return;
      }

      failures = 0;
      reauthenticate = false;
      this.#drainRequested = false;
      this.#session = session;
      this.#setState("connected");
      const connected = this.#connectedEvent(session);
      this.#everConnected = true;
      this.#events.emit("connected", connected);
      for (const waiter of this.#connectWaiters.splice(0)) waiter.resolve(session.welcome);
      this.#rejoin(session, plan.rejoin);

      ended = await session.closed;
      this.#session = undefined;
      if (this.#closing) return;
      const action = this.#drainRequested ? "reconnect_now" : closeAction(ended.code);
      if (this.#givesUp(action)) {
        this.#finish(ended.code, ended.reason);
        return;
      }
      reauthenticate = action === "reauthenticate";
      immediate = action === "reconnect_now" || action === "reauthenticate";
    }
  }

  /** Whether a close with this action ends the client: a new token is needed and none can be had. */
  #givesUp(action: CloseAction): boolean {
    return action === "give_up" || (action === "reauthenticate" && !this.#tokens.renewable);
  }

  /** A token for the next attempt; `undefined` when there is none to try. */
  async #token(mustBeNew: boolean): Promise<string | undefined> {
    if (mustBeNew) this.#tokens.discard();
    try {
      return await this.#tokens.fetch();
    } catch (error) {
      this.#events.emit("error", new TokenProviderError(error));
      // The token held from before still opens a connection, unless the server refused it.
      return mustBeNew ? undefined : this.#tokens.unexpired();
    }
  }

  #connectUrl(token: string, recover: Record<string, number>): string {
    const separator = this.#url.includes("?") ? "&" : "?";
    let url = `${this.#url}${separator}access_token=${encodeURIComponent(token)}`;
    if (Object.keys(recover).length > 0) url += `&recover=${encodeURIComponent(JSON.stringify(recover))}`;
    return url;
  }

  /** Joins again what the application had joined; failures are reported, not thrown. */
  #rejoin(session: Session, groups: Array<{ group: string; since?: number }>): void {
    for (const { group, since } of groups) {
      session.request({ type: "join", group, ...(since !== undefined && { since }) }).then(
        (reply) => {
          if (since !== undefined) {
            const outcome: GroupRecovery = { group, recovered: reply.recovered === true };
            if (reply.reason !== undefined) outcome.reason = reply.reason;
            if (reply.message !== undefined) outcome.message = reply.message;
            this.#events.emit("recovery", { recovered: outcome.recovered, groups: [outcome] });
          }
        },
        (error: unknown) => {
          if (error instanceof ServerError) this.#groups.left(group); // Refused for good (e.g. forbidden).
          this.#events.emit("error", error as SignalboxError);
        },
      );
    }
  }

  #receive(frame: Exclude<ServerFrame, WelcomeFrame | ReplyFrame>): void {
    switch (frame.type) {
      case "message":
        this.#deliver(frame);
        return;
      case "recovery":
        this.#events.emit("recovery", { recovered: frame.recovered, groups: frame.groups });
        return;
      case "presence": {
        const { type: _, ...event } = frame;
        this.#events.emit("presence", event);
        return;
      }
      case "reconnect":
        // The node is draining: leave now rather than wait for its 4200.
        this.#drainRequested = true;
        this.#session?.close(4200, frame.reason ?? "the server asked to reconnect");
        return;
      case "error":
        this.#events.emit("error", new ServerError(frame.error.code, frame.error.message));
        return;
      case "pong":
        return;
    }
  }

  #deliver(frame: MessageFrame): void {
    this.#groups.delivered(frame.group, frame.seq);
    const message: Message = {
      event: frame.event,
      data: frame.encoding === "base64" && typeof frame.data === "string" ? decodeBase64(frame.data) : frame.data,
    };
    if (frame.group !== undefined) message.group = frame.group;
    if (frame.seq !== undefined) message.seq = frame.seq;
    this.#events.emit("message", message);
    this.#messageEvents.emit(frame.event, message);
  }

  #connectedEvent(session: Session): ConnectedEvent {
    const event: ConnectedEvent = { connectionId: session.connectionId, reconnected: this.#everConnected };
    if (session.welcome.userId !== undefined) event.userId = session.welcome.userId;
    return event;
  }

  #setState(state: ConnectionState): void {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#events.emit("state", { state, previous });
  }

  #finish(code: number, reason: string): void {
    if (this.#state === "disconnected") return;
    this.#closing = true;
    this.#tokens.stop();
    this.#session = undefined;
    this.#setState("disconnected");
    this.#events.emit("disconnected", { code, reason });
    for (const waiter of this.#connectWaiters.splice(0)) waiter.reject(new ConnectionClosedError(code, reason));
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

/** Accepts `http(s)://` too, for symmetry with the REST base URL. */
function normalizeUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  else if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`not a WebSocket URL: ${url}`);
  }
  return parsed.toString();
}

function closure(error: unknown): DisconnectedEvent {
  if (error instanceof ConnectionClosedError) return { code: error.closeCode, reason: error.reason };
  return { code: 1006, reason: error instanceof Error ? error.message : String(error) };
}

function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
