// Two dictionaries with the same keys, the chosen language in localStorage, and every date and
// number formatted by Intl for that language. Elements of index.html name their string with
// data-i18n; views call t() as they render, and render again when the language changes.

import { en } from "./lang/en.js";
import { pl } from "./lang/pl.js";

export const DICTIONARIES = { en, pl };
const STORAGE_KEY = "erp-relay.lang";
const DEFAULT_LOCALES = { en: "en-GB", pl: "pl-PL" };

let lang = "en";
let locale = DEFAULT_LOCALES.en;
const listeners = [];

function preferredLanguages() {
  return navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
}

function choose(code) {
  lang = code;
  // Keep the browser's regional variant when it speaks the chosen language (en-US dates for
  // an American), else the language's usual region.
  locale = preferredLanguages().find((l) => l.toLowerCase().split("-")[0] === code) || DEFAULT_LOCALES[code];
  document.documentElement.lang = code;
}

function storedLanguage() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage disabled: fall back to the browser's language
  }
}

export function initLanguage() {
  const stored = storedLanguage();
  if (stored && stored in DICTIONARIES) {
    choose(stored);
  } else {
    const browser = preferredLanguages().map((l) => l.toLowerCase().split("-")[0]);
    choose(browser.find((l) => l in DICTIONARIES) || "en");
  }
}

export function language() {
  return lang;
}

export function setLanguage(code) {
  if (!(code in DICTIONARIES) || code === lang) return;
  choose(code);
  try {
    localStorage.setItem(STORAGE_KEY, code);
  } catch {
    // not persisted; still switched for this page
  }
  translateStatic();
  for (const listener of listeners) listener(code);
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

/** The string `key` in the current language, with {name} placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = DICTIONARIES[lang][key] ?? DICTIONARIES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

export function translateStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = t("app.title");
}

const DASH = "–";

function isBlank(value) {
  return value === null || value === undefined || value === "";
}

export function formatDateTime(iso) {
  if (isBlank(iso)) return DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(locale, { dateStyle: "short", timeStyle: "medium" }).format(date);
}

export function formatTime(iso) {
  if (isBlank(iso)) return DASH;
  return new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit" }).format(new Date(iso));
}

const RELATIVE_STEPS = [
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "5 minutes ago" / "5 minut temu", for "connected since" and "last seen". */
export function formatRelative(iso, now = Date.now()) {
  if (isBlank(iso)) return DASH;
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "auto", style: "short" });
  for (const [unit, size] of RELATIVE_STEPS) {
    if (Math.abs(seconds) >= size || unit === "second") return rtf.format(Math.round(seconds / size), unit);
  }
  return DASH;
}

export function formatNumber(value, digits = 0) {
  if (isBlank(value)) return DASH;
  return new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(value);
}

export function formatPercent(value) {
  if (isBlank(value)) return DASH;
  return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 }).format(value);
}

export function formatMs(value) {
  if (isBlank(value)) return DASH;
  return t("unit.ms", { value: formatNumber(value, value < 10 ? 1 : 0) });
}
