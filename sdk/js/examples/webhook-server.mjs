// A webhook endpoint that only believes requests Signalbox signed, recently.
// Run: WEBHOOK_SECRETS=whsec_new,whsec_old PORT=4000 node webhook-server.mjs
import { createServer } from "node:http";
import { verifyWebhook, WebhookVerificationError } from "@signalbox/client/server";

/** An HTTP handler for `POST /webhooks/signalbox`; `handle(event)` returns the answer's body. */
export function webhookHandler({ secrets, handle }) {
  return async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const rawBody = Buffer.concat(chunks); // Verify the bytes as received, before parsing.
    try {
      verifyWebhook(rawBody, request.headers["signalbox-signature"], { secrets });
    } catch (error) {
      if (!(error instanceof WebhookVerificationError)) throw error;
      response.writeHead(401, { "content-type": "text/plain" }).end(error.code);
      return;
    }
    const answer = await handle(JSON.parse(rawBody.toString("utf8")));
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer ?? {}));
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // During a secret rotation, hold both secrets until Signalbox signs with the new one only.
  const secrets = (process.env.WEBHOOK_SECRETS ?? "").split(",").filter(Boolean);
  const handle = async (event) => {
    console.log("webhook:", event.type ?? event);
    return {};
  };
  createServer(webhookHandler({ secrets, handle })).listen(Number(process.env.PORT ?? 4000));
}
