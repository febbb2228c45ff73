// A small typed event emitter (no dependency on Node's `events`, so it runs in browsers).

export type Unsubscribe = () => void;

export class Emitter<Events extends object> {
  readonly #handlers = new Map<keyof Events, Set<(payload: never) => void>>();

  on<K extends keyof Events>(name: K, handler: (payload: Events[K]) => void): Unsubscribe {
    let handlers = this.#handlers.get(name);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(name, handlers);
    }
    handlers.add(handler as (payload: never) => void);
    return () => this.off(name, handler);
  }

  off<K extends keyof Events>(name: K, handler: (payload: Events[K]) => void): void {
    this.#handlers.get(name)?.delete(handler as (payload: never) => void);
  }

  emit<K extends keyof Events>(name: K, payload: Events[K]): void {
    const handlers = this.#handlers.get(name);
    if (!handlers) return;
    for (const handler of [...handlers]) {
      try {
        (handler as (payload: Events[K]) => void)(payload);
      } catch (error) {
        // A throwing handler must not leave the client half-updated: report it the way an
        // uncaught error in an event listener is reported, outside the client's own code path.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
