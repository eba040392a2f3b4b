// The live feed: one EventSource on GET /v1/events for the whole signed-in page. The browser
// reconnects by itself after a network blip (sending Last-Event-ID); an HTTP error such as
// 401 closes the stream for good, so then we ask whether the session still exists and, if it
// does, open a new stream after a pause.

import { get } from "./api.js";

export const EVENT_KINDS = [
  "agent.connected",
  "agent.disconnected",
  "agent.degraded",
  "agent.recovered",
  "job.finished",
];
const RETRY_MS = 5000;

export class LiveFeed {
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.listeners = new Set();
    this.source = null;
    this.retry = null;
  }

  /** Call `listener(event)` for each event until the returned function is called. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start() {
    this.stop();
    const source = new EventSource("/v1/events");
    this.source = source;
    this.onStatus("connecting");
    source.addEventListener("open", () => this.onStatus("live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onStatus("offline");
        this.retry = setTimeout(() => this.recover(), RETRY_MS);
      } else {
        this.onStatus("connecting");
      }
    });
    for (const kind of EVENT_KINDS) {
      source.addEventListener(kind, (message) => this.dispatch(message));
    }
  }

  async recover() {
    try {
      await get("/v1/admin/session"); // a 401 here signs the page out (api.onSessionLost)
      this.start();
    } catch (error) {
      if (error.status !== 401) this.retry = setTimeout(() => this.recover(), RETRY_MS);
    }
  }

  dispatch(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    for (const listener of this.listeners) listener(event);
  }

  stop() {
    clearTimeout(this.retry);
    if (this.source) this.source.close();
    this.source = null;
  }
}
