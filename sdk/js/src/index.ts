// @signalbox/client: the realtime client for browsers and Node.
// The server helper for Node backends is a separate entry point: @signalbox/client/server.

export {
  SignalboxClient,
  type ClientEvents,
  type ClientOptions,
  type ConnectedEvent,
  type ConnectionState,
  type DisconnectedEvent,
  type JoinOptions,
  type JoinResult,
  type Message,
  type PresenceEvent,
  type PublishOptions,
  type PublishResult,
  type ReconnectingEvent,
  type RecoveryEvent,
} from "./client.js";
export type { BackoffOptions } from "./backoff.js";
export { closeAction, type CloseAction } from "./close-codes.js";
export type { Unsubscribe } from "./emitter.js";
export {
  ConnectionClosedError,
  NotConnectedError,
  ServerError,
  SignalboxError,
  TimeoutError,
  TokenProviderError,
  type ServerErrorCode,
} from "./errors.js";
export type { GroupRecovery, Json, RecoveryReason, PresenceChange, PresenceMember, PresenceSnapshot } from "./protocol.js";
export { SUBPROTOCOL } from "./protocol.js";
export { tokenExpiry, type TokenProvider } from "./token.js";
export type { WebSocketConstructor, WebSocketLike } from "./websocket.js";
