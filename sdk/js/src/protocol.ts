// The wire format `signalbox.json.v1` (docs/protocol.md): one JSON object per text frame.
// Only what this client reads or writes is typed here; unknown fields and frame types are
// ignored, as the protocol asks, because it only ever grows by adding.

export const SUBPROTOCOL = "signalbox.json.v1";

/** A JSON value, as `data` may carry. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface WelcomeFrame {
  type: "welcome";
  connectionId: string;
  userId?: string;
  heartbeatSeconds?: number;
}

export interface MessageFrame {
  type: "message";
  event: string;
  data: Json;
  group?: string;
  seq?: number;
  encoding?: "base64";
}

export interface ErrorBody {
  code: string;
  message: string;
}

/** The answer to a request with an `id`; which fields are set depends on the request. */
export interface ReplyFrame {
  type: "reply";
  id: number | string;
  error?: ErrorBody;
  /** A publish to a group with history: where it was stored. */
  position?: number;
  /** A join with `since`: whether every missed message was replayed. */
  recovered?: boolean;
  reason?: RecoveryReason;
  message?: string;
  /** A client event: the tenant webhook's answer. */
  data?: Json;
  /** A presence query. */
  presence?: PresenceSnapshot;
}

/**
 * Why a group was not recovered (docs/protocol.md, "History and recovery"): `expired`,
 * `reset`, `no_history` and `forbidden` mean reload the state from your backend;
 * `unavailable` and `closed` mean reconnect and recover again.
 */
export type RecoveryReason = "no_history" | "expired" | "reset" | "forbidden" | "unavailable" | "closed";

export interface GroupRecovery {
  group: string;
  /** True when every message after the position given was delivered, in order, once. */
  recovered: boolean;
  /** Why not, when `recovered` is false: a stable code. */
  reason?: RecoveryReason;
  /** The same in words. */
  message?: string;
}

export interface RecoveryFrame {
  type: "recovery";
  recovered: boolean;
  groups: GroupRecovery[];
}

export interface ReconnectFrame {
  type: "reconnect";
  reason?: string;
}

export interface ErrorFrame {
  type: "error";
  error: ErrorBody;
}

export interface PresenceMember {
  userId: string;
  /** How many connections this user has in the group. */
  connections: number;
  /** The `info` claim of the user's token, if it had one. */
  info?: Json;
}

/** The answer to a presence query. */
export interface PresenceSnapshot {
  /** Distinct users in the group. */
  count: number;
  /** All connections in the group, anonymous ones included. */
  connections: number;
  members: PresenceMember[];
}

export interface PresenceChange {
  userId: string;
  connectionId: string;
}

/**
 * A presence event for a group the connection is in, when the app enables them: joins and
 * leaves (`members` mode, batched; `truncated` when the lists were cut) and the group's number
 * of connections (`count`, in both modes).
 */
export interface PresenceFrame {
  type: "presence";
  group: string;
  joined?: PresenceChange[];
  left?: PresenceChange[];
  truncated?: boolean;
  /** The group's connections (not users, unlike a snapshot's `count`). */
  count?: number;
}

export interface PongFrame {
  type: "pong";
  id?: number | string;
}

export type ServerFrame =
  | WelcomeFrame
  | MessageFrame
  | ReplyFrame
  | RecoveryFrame
  | ReconnectFrame
  | ErrorFrame
  | PresenceFrame
  | PongFrame;

const KNOWN_TYPES: ReadonlySet<string> = new Set([
  "welcome",
  "message",
  "reply",
  "recovery",
  "reconnect",
  "error",
  "presence",
  "pong",
]);

/** Parses a text frame; `undefined` for anything that is not a frame this client knows. */
export function parseServerFrame(text: string): ServerFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const type = (value as { type?: unknown }).type;
  return typeof type === "string" && KNOWN_TYPES.has(type) ? (value as ServerFrame) : undefined;
}

/** Client → server requests, without their `id` (the session adds one). */
export type ClientRequest =
  | { type: "join"; group: string; since?: number }
  | { type: "leave"; group: string }
  | { type: "publish"; group: string; event: string; data: Json; noEcho?: boolean }
  | { type: "event"; event: string; data: Json }
  | { type: "presence"; group: string }
  | { type: "ping" };
