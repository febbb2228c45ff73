// A TCP proxy between a client and Signalbox, to break the network in ways a server never
// does on purpose: drop every connection without a close frame, refuse new ones for a while,
// or go silent while keeping the sockets open (a frozen peer).

import net from "node:net";

export class TcpProxy {
  #server;
  #pairs = new Set();
  #refusing = false;

  static async start(targetPort) {
    const proxy = new TcpProxy();
    await proxy.#listen(targetPort);
    return proxy;
  }

  get port() {
    return this.#server.address().port;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/client`;
  }

  async #listen(targetPort) {
    this.#server = net.createServer((client) => {
      if (this.#refusing) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(targetPort, "127.0.0.1");
      const pair = { client, upstream };
      this.#pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      const end = () => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
    });
    await new Promise((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
  }

  /** Cuts every open connection: the client sees a reset, no close frame (1006). */
  dropAll() {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.#pairs.clear();
  }

  /** While true, new connections are reset as soon as they arrive. */
  refuse(refusing) {
    this.#refusing = refusing;
  }

  /** Stops forwarding on every open connection but keeps it open: a silent, frozen peer. */
  freeze() {
    for (const { client, upstream } of this.#pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  async close() {
    this.dropAll();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
