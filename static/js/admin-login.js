/**
 * admin-login.js: the admin login page (GET /admin/login) in the reader's
 * language. The form works without it; it only translates the page's text
 * (marked with data-i18n*) and its title. The refusal above the form comes
 * from the server in English, with a code (`data-code`) by which it is
 * shown in the reader's language.
 */
import { lang, localize, t } from "/static/js/i18n.js";

localize();
document.title = t("admin.loginPageTitle");
const refusal = document.querySelector('[data-testid="login-error"]');
if (refusal && refusal.dataset.code && lang !== "en") {
  refusal.textContent = t(`admin.refused.${refusal.dataset.code}`, { secs: refusal.dataset.wait });
}
