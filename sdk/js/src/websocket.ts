// Which WebSocket implementation to use. Browsers (and Node 22+) have a global one; Node 20
// does not, so there the `ws` package is loaded — lazily and only then, so a browser bundle
// never needs it.

import { SignalboxError } from "./errors.js";

/** The part of the WHATWG WebSocket this client uses (browsers and `ws` both provide it). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** `WebSocket.OPEN`, the same in every implementation. */
export const OPEN = 1;

export async function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  // A variable specifier keeps bundlers from trying to pull `ws` into browser builds.
  const specifier = "ws";
  try {
    const module = (await import(specifier)) as { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor };
    const constructor = module.WebSocket ?? module.default;
    if (constructor) return constructor;
  } catch (cause) {
    throw new SignalboxError(
      "no_websocket",
      'this runtime has no WebSocket: install the "ws" package or pass options.WebSocket',
      { cause },
    );
  }
  throw new SignalboxError("no_websocket", 'the "ws" package exports no WebSocket');
}

/**
 * Drops a socket at once. `close()` waits for the peer's close frame, which a dead server never
 * sends; `ws` offers `terminate()` for exactly this, browsers do not need it.
 */
export function abandon(socket: WebSocketLike): void {
  socket.onopen = socket.onmessage = socket.onclose = null;
  // Not null: `ws` emits an error when a handshake is aborted, and an EventEmitter with no
  // error listener throws.
  socket.onerror = () => {};
  const terminate = (socket as { terminate?: () => void }).terminate;
  try {
    if (typeof terminate === "function") terminate.call(socket);
    else socket.close();
  } catch {
    // Closing a socket that is already closing may throw in some implementations: it is gone either way.
  }
}
