// What the client must remember across connections to put the application back where it was:
// the groups the application joined (joined again after a reconnect) and, per group with
// history, the position of the last message delivered (recovered after a reconnect, so the
// application gets every message once, in order).

/** The protocol accepts at most this many groups in `recover`. */
export const MAX_RECOVER_GROUPS = 100;

export interface ResumePlan {
  /** Sent as `recover` when connecting: group → last position seen. */
  recover: Record<string, number>;
  /** Joined again once connected, with `since` for groups that did not fit in `recover`. */
  rejoin: Array<{ group: string; since?: number }>;
}

export class GroupTracker {
  /** Groups the application joined itself. The token's own groups are joined by the server. */
  readonly #joined = new Set<string>();
  /** The last position delivered per group with history (joined by the app or by the token). */
  readonly #positions = new Map<string, number>();

  joined(group: string, since?: number): void {
    this.#joined.add(group);
    if (since !== undefined) this.#advance(group, since);
  }

  left(group: string): void {
    this.#joined.delete(group);
    this.#positions.delete(group);
  }

  delivered(group: string | undefined, seq: number | undefined): void {
    if (group !== undefined && seq !== undefined) this.#advance(group, seq);
  }

  positions(): Record<string, number> {
    return Object.fromEntries(this.#positions);
  }

  /** How to resume after a reconnect. */
  plan(): ResumePlan {
    const recover: Record<string, number> = {};
    const rejoin: ResumePlan["rejoin"] = [];
    for (const [group, position] of this.#positions) {
      if (Object.keys(recover).length < MAX_RECOVER_GROUPS) recover[group] = position;
      else if (this.#joined.has(group)) rejoin.push({ group, since: position });
    }
    for (const group of this.#joined) {
      if (!this.#positions.has(group)) rejoin.push({ group });
    }
    return { recover, rejoin };
  }

  #advance(group: string, position: number): void {
    // Positions only grow; a replayed message never moves a group back.
    this.#positions.set(group, Math.max(position, this.#positions.get(group) ?? 0));
  }
}
