// Management calls, for operators (creating tenants) and tenants (apps, settings, keys). Most
// backends never need these — they hold one app key and use `AppClient` — but setup scripts,
// consoles and tests do.

import { RestClient } from "./rest.js";

export interface Tenant {
  id: string;
  name: string;
  /** The tenant's management token: shown once. */
  token: string;
}

/** An app; its settings (`limits`, `history`, …) are the other fields, as the API names them. */
export interface App {
  id: string;
  name: string;
  [setting: string]: unknown;
}

export interface CreatedKey {
  id: string;
  name: string;
  scopes: string[];
  /** Signs client tokens (HS256, `kid` = the key id). Shown once. */
  secret: string;
  /** The REST credential `{id}.{secret}`: what `AppClient` takes. Shown once. */
  credential: string;
  /** The same key as Pusher Channels credentials (docs/pusher.md). Shown once. */
  pusher: { app_id: string; key: string; secret: string };
}

export type KeyScope = "publish" | "groups" | "tokens" | "read";

export type WebhookEvent = "connect" | "connected" | "disconnected" | "event";

export interface Webhook {
  id: string;
  url: string;
  events: WebhookEvent[];
  /** A secret rotation is under way: requests carry two signatures. */
  rotating: boolean;
  /** Signs the requests (`verifyWebhook`). Only in the answers that create or rotate it. */
  secret?: string;
}

export interface WebhookUpdate {
  url?: string;
  events?: WebhookEvent[];
  /** Makes a new secret (in the answer); the current one keeps signing beside it. */
  rotateSecret?: boolean;
  /** Ends a rotation: only the newest secret signs from now on. */
  dropPreviousSecret?: boolean;
}

/** Calls made with an operator token or a tenant token (`bearer`). */
export class ManagementClient {
  readonly #rest: RestClient;

  constructor(options: { url: string; token: string; timeoutMs?: number }) {
    this.#rest = new RestClient(options.url, options.token, options.timeoutMs);
  }

  /** Operator token: creates a tenant and returns its management token. */
  createTenant(name: string): Promise<Tenant> {
    return this.#rest.request("POST", "/v1/tenants", { body: { name } });
  }

  /** Tenant token: creates an app, with any settings (`{history: {groups: ["room-*"]}}`). */
  createApp(name: string, settings: Record<string, unknown> = {}): Promise<App> {
    return this.#rest.request("POST", "/v1/apps", { body: { ...settings, name } });
  }

  getApp(app: string): Promise<App> {
    return this.#rest.request("GET", RestClient.path("v1", "apps", app));
  }

  /** A JSON merge patch of the app's name and settings (`null` resets a setting). */
  updateApp(app: string, patch: Record<string, unknown>): Promise<App> {
    return this.#rest.request("PATCH", RestClient.path("v1", "apps", app), { body: patch });
  }

  deleteApp(app: string): Promise<void> {
    return this.#rest.request("DELETE", RestClient.path("v1", "apps", app));
  }

  /** Creates a key (every scope unless `scopes` says otherwise). */
  createKey(app: string, options: { name?: string; scopes?: KeyScope[] } = {}): Promise<CreatedKey> {
    return this.#rest.request("POST", RestClient.path("v1", "apps", app, "keys"), { body: options });
  }

  /** Tenant token: calls `url` for `events`. The answer carries the signing secret, once. */
  createWebhook(app: string, webhook: { url: string; events: WebhookEvent[] }): Promise<Webhook> {
    return this.#rest.request("POST", RestClient.path("v1", "apps", app, "webhooks"), { body: webhook });
  }

  updateWebhook(app: string, webhook: string, update: WebhookUpdate): Promise<Webhook> {
    const body: Record<string, unknown> = {};
    if (update.url !== undefined) body.url = update.url;
    if (update.events !== undefined) body.events = update.events;
    if (update.rotateSecret) body.rotate_secret = true;
    if (update.dropPreviousSecret) body.drop_previous_secret = true;
    return this.#rest.request("PATCH", RestClient.path("v1", "apps", app, "webhooks", webhook), { body });
  }

  deleteWebhook(app: string, webhook: string): Promise<void> {
    return this.#rest.request("DELETE", RestClient.path("v1", "apps", app, "webhooks", webhook));
  }

  /** Revokes a key: its REST calls fail at once and its clients are closed with 4403. */
  revokeKey(app: string, key: string): Promise<void> {
    return this.#rest.request("DELETE", RestClient.path("v1", "apps", app, "keys", key));
  }
}
