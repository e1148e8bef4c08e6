// The "API key" form in the header. It is shown when the server needs keys (GET
// /ui/api/session answers keys: true) or when this tab holds one. "Use" first asks the server
// whether it knows the key (GET /ui/api/session with it): a key it refuses is not kept, and the
// form asks again; a key it knows goes to this tab's sessionStorage (see api.js) and the page
// reloads, so that every request carries it. "Forget" drops it. The key is never put in a URL,
// the page or a log: the form has no named field and never submits (the page's CSP has
// form-action 'none' besides).

import { KEY_PATTERN, forgetKey, onRefused, rememberKey, sessionFor, storedKey } from "./api.js";
import { replace } from "./dom.js";

function who(access) {
  if (access?.key) return `signed in as ${access.key.name} (${access.key.roles.join(", ")})`;
  if (access?.key_error) return `key refused: ${access.key_error}`;
  return storedKey() ? "" : "no key: enter one to see this server";
}

/** Show the form if `access` (the session answer, or null) calls for it, and wire it up. */
export function mountKeyForm(access) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const use = document.getElementById("key-use");
  const forget = document.getElementById("key-forget");
  const status = document.getElementById("key-status");
  const held = storedKey() !== "";
  if (!access?.keys && !held) return;
  form.hidden = false;
  forget.hidden = !held;
  if (held) input.placeholder = "another key";
  let signedIn = who(access);
  replace(status, signedIn);
  status.classList.toggle("bad", Boolean(access?.key_error));

  function refuse(message) {
    replace(status, message);
    status.classList.add("bad");
    input.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!KEY_PATTERN.test(key)) {
      refuse("An API key is visible ASCII characters without spaces.");
      return;
    }
    use.disabled = true;
    let answer;
    try {
      answer = await sessionFor(key);
    } catch (error) {
      use.disabled = false;
      refuse(`The key could not be checked: ${error.message}`);
      return;
    }
    use.disabled = false;
    input.value = "";
    if (answer.key_error || !answer.key) {
      refuse(`key refused: ${answer.key_error || "the server does not need keys"}`);
      return;
    }
    rememberKey(key);
    location.reload();
  });
  forget.addEventListener("click", () => {
    forgetKey();
    location.reload();
  });
  onRefused((error) => {
    if (error.status === 401) {
      // api.js has dropped the key: the form asks for another one.
      signedIn = "";
      forget.hidden = true;
      input.placeholder = "";
      replace(status, "key refused (401): enter another key");
    } else {
      const why = "this key's roles may not do that (403)";
      replace(status, signedIn ? `${signedIn}; ${why}` : why);
    }
    status.classList.add("bad");
  });
}
