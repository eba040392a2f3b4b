// How a screen stays current: load now, again on the live events it cares about (coalesced, so
// a burst of reconnects costs one request), and on a timer for what events do not cover
// (rates, latencies, new calls).

const EVENT_DELAY_MS = 200;
export const POLL_MS = 5000;

export class Refresher {
  constructor(load, live, wanted, pollMs = POLL_MS) {
    this.load = load;
    this.pending = null;
    this.running = Promise.resolve();
    this.unsubscribe = live.subscribe((event) => {
      if (wanted(event)) this.soon();
    });
    this.timer = setInterval(() => this.now(), pollMs);
    this.now();
  }

  /** Load once more, after any load already running (never two at once). */
  now() {
    this.running = this.running.then(() => this.load()).catch(() => {});
    return this.running;
  }

  soon() {
    if (this.pending !== null) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.now();
    }, EVENT_DELAY_MS);
  }

  stop() {
    this.unsubscribe();
    clearInterval(this.timer);
    clearTimeout(this.pending);
  }
}
