// Forms of the admin screens: a labelled field and a submit handler that shows the problem's
// `detail` next to the form.

import { h } from "../dom.js";
import { errorText } from "../ui.js";

export function field(id, label, input, hint) {
  const hintId = hint ? `${id}-hint` : null;
  input.id = id;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id, text: label }), input, hint ? h("p", { class: "hint", id: hintId, text: hint }) : null);
}

export function adminForm(title, fields, submitLabel, onSubmit) {
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary", text: submitLabel });
  const form = h("form", { class: "card" }, h("h2", { text: title }), fields, error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      await onSubmit();
      form.reset();
    } catch (failure) {
      error.textContent = errorText(failure);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
