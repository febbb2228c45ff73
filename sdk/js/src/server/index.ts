// @signalbox/client/server: for Node backends. The REST API of an app (`AppClient`), setup calls
// (`ManagementClient`), signing client tokens and verifying webhook signatures. Uses Node's
// fetch and crypto; never import it into a browser bundle (it would carry your key).

export {
  AppClient,
  type Accepted,
  type AppClientOptions,
  type ConnectionInfo,
  type GroupPresence,
  type HistoryItem,
  type HistoryPage,
  type MintedToken,
  type PublishOptions,
  type UserPresence,
} from "./app.js";
export {
  ManagementClient,
  type App,
  type CreatedKey,
  type KeyScope,
  type Tenant,
  type Webhook,
  type WebhookEvent,
  type WebhookUpdate,
} from "./management.js";
export { ApiError, RequestFailedError, type Problem } from "./rest.js";
export { parseKeyCredential, signClientToken, type ClientTokenClaims, type SigningKey } from "./tokens.js";
export {
  DEFAULT_TOLERANCE_SECONDS,
  SIGNATURE_HEADER,
  signWebhook,
  verifyWebhook,
  WebhookVerificationError,
  type VerifyWebhookOptions,
  type WebhookVerificationFailure,
} from "./webhooks.js";
export { SignalboxError } from "../errors.js";
