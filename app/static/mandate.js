// Enhancements only: every page works, and says what to do, without this script.
import { initAll } from "./nhsuk/nhsuk-frontend.min.js";

document.body.classList.add("js-enabled", "nhsuk-frontend-supported");
initAll();

for (const button of document.querySelectorAll("[data-mandate-print]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
