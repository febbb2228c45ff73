// The REST API of one app, for that app's backend (docs/openapi.json): publish, manage group
// membership and connections, read history and presence, and get client tokens — minted by
// Signalbox or signed right here.

import { RestClient, type RequestOptions } from "./rest.js";
import { parseKeyCredential, signClientToken, type ClientTokenClaims } from "./tokens.js";

export interface AppClientOptions {
  /** Where Signalbox listens, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** The app id. */
  app: string;
  /** An app key's credential, `{key_id}.{secret}` (the `credential` field of a new key). */
  key: string;
  /** Per-request timeout (default 30 s). */
  timeoutMs?: number;
}

export interface PublishOptions {
  /** Connection ids not to deliver to. */
  exclude?: string[];
  /** Retrying with the same key publishes once (for 10 minutes, on any api node). */
  idempotencyKey?: string;
}

export interface Accepted {
  /** The message id. */
  id: string;
  /** Where the message was stored, for a group with history. */
  position?: number;
}

export interface ConnectionInfo {
  id: string;
  userId?: string;
  groups: string[];
  protocol: string;
  transport: string;
  /** The edge node holding it. */
  node: string;
  /** Seconds since the epoch. */
  connectedAt: number;
}

export interface HistoryItem {
  position: number;
  id: string;
  event: string;
  data: unknown;
  /** Microseconds since the epoch. */
  publishedAt: number;
}

export interface HistoryPage {
  items: HistoryItem[];
  /** Pass as `after` for the next page; absent on the last page. */
  next?: number;
}

export interface GroupPresence {
  /** Distinct users in the group. */
  count: number;
  /** All connections in the group, anonymous ones included. */
  connections: number;
  members: Array<{ userId: string; connections: number; info?: unknown }>;
  /** Pass as `after` for the next page; absent on the last page. */
  next?: string;
}

export interface UserPresence {
  online: boolean;
  connections: number;
}

export interface MintedToken {
  token: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  /** The key that signed it. */
  keyId: string;
}

export class AppClient {
  readonly app: string;
  readonly #rest: RestClient;
  readonly #keyId: string;
  readonly #secret: string;

  constructor(options: AppClientOptions) {
    this.app = options.app;
    const { keyId, secret } = parseKeyCredential(options.key);
    this.#keyId = keyId;
    this.#secret = secret;
    this.#rest = new RestClient(options.url, options.key, options.timeoutMs);
  }

  // Publishing --------------------------------------------------------------------------

  broadcast(event: string, data: unknown, options?: PublishOptions): Promise<Accepted> {
    return this.#publish(["broadcast"], event, data, options);
  }

  publishToGroup(group: string, event: string, data: unknown, options?: PublishOptions): Promise<Accepted> {
    return this.#publish(["groups", group, "messages"], event, data, options);
  }

  publishToUser(user: string, event: string, data: unknown, options?: PublishOptions): Promise<Accepted> {
    return this.#publish(["users", user, "messages"], event, data, options);
  }

  publishToConnection(connection: string, event: string, data: unknown, options?: PublishOptions): Promise<Accepted> {
    return this.#publish(["connections", connection, "messages"], event, data, options);
  }

  // Groups ------------------------------------------------------------------------------

  addConnectionToGroup(group: string, connection: string): Promise<void> {
    return this.#call("PUT", ["groups", group, "connections", connection]);
  }

  removeConnectionFromGroup(group: string, connection: string): Promise<void> {
    return this.#call("DELETE", ["groups", group, "connections", connection]);
  }

  /** Adds every current and future connection of a user, optionally for `ttlSeconds`. */
  addUserToGroup(group: string, user: string, options: { ttlSeconds?: number } = {}): Promise<void> {
    const body = options.ttlSeconds !== undefined ? { ttl_seconds: options.ttlSeconds } : undefined;
    return this.#call("PUT", ["groups", group, "users", user], { body });
  }

  removeUserFromGroup(group: string, user: string): Promise<void> {
    return this.#call("DELETE", ["groups", group, "users", user]);
  }

  /** A page of a group's history (groups with history only). */
  async history(group: string, options: { after?: number; limit?: number } = {}): Promise<HistoryPage> {
    const page = await this.#call<{ items: RawHistoryItem[]; next?: number | null }>("GET", ["groups", group, "history"], {
      query: { after: options.after, limit: options.limit },
    });
    const items = page.items.map(({ published_at, ...item }) => ({ ...item, publishedAt: published_at }));
    return page.next == null ? { items } : { items, next: page.next };
  }

  // Connections -------------------------------------------------------------------------

  async connection(connection: string): Promise<ConnectionInfo> {
    const raw = await this.#call<RawConnection>("GET", ["connections", connection]);
    const info: ConnectionInfo = {
      id: raw.id,
      groups: raw.groups,
      protocol: raw.protocol,
      transport: raw.transport,
      node: raw.node,
      connectedAt: raw.connected_at,
    };
    if (raw.user_id != null) info.userId = raw.user_id;
    return info;
  }

  /** Closes a connection: its client sees close code 4000 (give up) with `reason`. */
  closeConnection(connection: string, options: { reason?: string } = {}): Promise<void> {
    return this.#call("DELETE", ["connections", connection], { query: { reason: options.reason } });
  }

  /** Closes every connection of a user, on every node. */
  closeUserConnections(user: string, options: { reason?: string } = {}): Promise<void> {
    return this.#call("DELETE", ["users", user, "connections"], { query: { reason: options.reason } });
  }

  // Presence ----------------------------------------------------------------------------

  /** Who is in a group: one page of members (`after` = the previous page's `next`). */
  async groupPresence(group: string, options: { limit?: number; after?: string } = {}): Promise<GroupPresence> {
    const raw = await this.#call<RawGroupPresence>("GET", ["groups", group, "presence"], {
      query: { limit: options.limit, after: options.after },
    });
    const members = raw.members.map(({ user_id, connections, info }) =>
      info === undefined || info === null ? { userId: user_id, connections } : { userId: user_id, connections, info },
    );
    const presence: GroupPresence = { count: raw.count, connections: raw.connections, members };
    if (raw.next != null) presence.next = raw.next;
    return presence;
  }

  userPresence(user: string): Promise<UserPresence> {
    return this.#call("GET", ["users", user, "presence"]);
  }

  // Client tokens -----------------------------------------------------------------------

  /** Asks Signalbox to mint a client token (signed with this client's key). */
  async mintToken(claims: ClientTokenClaims = {}): Promise<MintedToken> {
    const body: Record<string, unknown> = {};
    if (claims.userId !== undefined) body.user_id = claims.userId;
    if (claims.groups !== undefined) body.groups = claims.groups;
    if (claims.permissions !== undefined) body.permissions = claims.permissions;
    if (claims.info !== undefined) body.info = claims.info;
    if (claims.ttlSeconds !== undefined) body.ttl_seconds = claims.ttlSeconds;
    const minted = await this.#call<{ token: string; expires_at: number; key_id: string }>("POST", ["tokens"], { body });
    return { token: minted.token, expiresAt: minted.expires_at, keyId: minted.key_id };
  }

  /** Signs a client token here, with this client's key: no request to Signalbox. */
  signToken(claims: ClientTokenClaims = {}): string {
    return signClientToken({ app: this.app, keyId: this.#keyId, secret: this.#secret }, claims);
  }

  #publish(path: string[], event: string, data: unknown, options: PublishOptions = {}): Promise<Accepted> {
    const body: Record<string, unknown> = { event, data };
    if (options.exclude?.length) body.exclude = options.exclude;
    const headers: Record<string, string> = {};
    if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey;
    return this.#call<{ id: string; position?: number | null }>("POST", path, { body, headers }).then((accepted) =>
      accepted.position == null ? { id: accepted.id } : { id: accepted.id, position: accepted.position },
    );
  }

  #call<T = void>(method: string, path: string[], options?: RequestOptions): Promise<T> {
    return this.#rest.request<T>(method, RestClient.path("v1", "apps", this.app, ...path), options);
  }
}

interface RawHistoryItem {
  position: number;
  id: string;
  event: string;
  data: unknown;
  published_at: number;
}

interface RawConnection {
  id: string;
  user_id?: string | null;
  groups: string[];
  protocol: string;
  transport: string;
  node: string;
  connected_at: number;
}

interface RawGroupPresence {
  count: number;
  connections: number;
  members: Array<{ user_id: string; connections: number; info?: unknown }>;
  next?: string | null;
}
