// Keep ?next= of the page that sent us here: the form posts to /login?next=...
"use strict";
const next = new URLSearchParams(location.search).get("next");
if (next && next.startsWith("/") && !next.startsWith("//")) {
  document.getElementById("login-form").action = "/login?next=" + encodeURIComponent(next);
}
