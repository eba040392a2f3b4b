// Sign-in: username and password to POST /v1/admin/session. Wrong credentials and the
// slow-down after repeated failures (429) come back as problem documents and are shown as is.

import { request } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { errorText } from "../ui.js";

export function signInView(main, { notice, signedIn }) {
  const error = h("p", { class: "form-error", id: "signin-error", role: "alert" });
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button", { type: "submit", class: "primary", text: t("signin.submit") });
  const form = h(
    "form",
    { class: "card signin", "aria-describedby": "signin-error" },
    h("h1", { text: t("signin.title") }),
    notice ? h("p", { class: "notice", role: "status", text: t(notice) }) : null,
    h("div", { class: "field" }, h("label", { for: "username", text: t("signin.username") }), username),
    h("div", { class: "field" }, h("label", { for: "password", text: t("signin.password") }), password),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      const answer = await request(
        "POST",
        "/v1/admin/session",
        { username: username.value, password: password.value },
        { signIn: true },
      );
      signedIn(answer);
    } catch (failure) {
      error.textContent = failure.status === 401 ? t("signin.failed") : errorText(failure);
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  username.focus();
}
