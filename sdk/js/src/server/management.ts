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
}

export type KeyScope = "publish" | "groups" | "tokens" | "read";

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

  /** Revokes a key: its REST calls fail at once and its clients are closed with 4403. */
  revokeKey(app: string, key: string): Promise<void> {
    return this.#rest.request("DELETE", RestClient.path("v1", "apps", app, "keys", key));
  }
}
