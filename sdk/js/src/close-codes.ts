// What to do after the server closed a connection. docs/protocol.md ("Close codes") gives
// each code an action and each range of application codes one action, so a code this client
// does not know still gets the right treatment.

/** What a close code tells the client to do. */
export type CloseAction =
  /** Reconnect after an exponential backoff with jitter. */
  | "retry"
  /** Reconnect at once (the node is draining or shutting down). */
  | "reconnect_now"
  /** Get a new token, then reconnect. */
  | "reauthenticate"
  /** Do not reconnect: it cannot succeed as it is. */
  | "give_up";

/** WebSocket codes (RFC 6455) after which reconnecting as is cannot succeed. */
const GIVE_UP_WEBSOCKET_CODES: ReadonlySet<number> = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);

export function closeAction(code: number): CloseAction {
  if (code >= 4000 && code <= 4099) return "give_up";
  if (code >= 4100 && code <= 4199) return "retry";
  if (code >= 4200 && code <= 4299) return "reconnect_now";
  if (code >= 4400 && code <= 4499) return "reauthenticate";
  if (code === 1001) return "reconnect_now";
  if (GIVE_UP_WEBSOCKET_CODES.has(code)) return "give_up";
  // 1005/1006 (no close frame: a dropped network), 1011, 1013 and anything unknown: the
  // server or the network may recover, so retry, politely.
  return "retry";
}
