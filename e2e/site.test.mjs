// End-to-end test of the Portico reference site in headless Chromium.
//
// One visitor goes through the site the way a person would: register, log out, log in, write a
// note with tags, find it by tag, edit it, delete it, and hit the "form opened in another tab
// before logging out" case. Each step checks what the page shows, not the database.
//
// The site must already be running: `e2e/run.sh` starts it (fresh data dir, captcha test mode)
// and passes its address in PORTICO_URL. Elements are found by their name attributes and visible
// text, never by CSS classes, so a restyling does not break the test.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE_URL = process.env.PORTICO_URL;
const CAPTCHA = process.env.PORTICO_CAPTCHA_TEST_ANSWER || "test-captcha";
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARTIFACTS = process.env.PORTICO_E2E_ARTIFACTS || path.resolve(here, "..", "artifacts", "e2e");

// A laptop and a phone, in CSS pixels.
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

// Short enough that a broken page fails the step quickly, long enough for a debug build on a
// busy machine (the first Argon2 hash of a debug build takes a moment).
const ACTION_TIMEOUT_MS = 15_000;
const STEP_TIMEOUT_MS = 60_000;

if (!BASE_URL) {
  throw new Error("PORTICO_URL is not set: start the tests with e2e/run.sh, which starts the site");
}

// A fresh account for every run, so the test also works against a site that is not new.
const USERNAME = `e2e_${Date.now().toString(36)}`;
const PASSWORD = "quiet-Harbor-4821-lamp";

const NOTE = {
  title: "Planning meeting agenda",
  body: "Agenda for Monday:\n- budget review\n- hiring plan",
  tags: ["work", "ideas"],
};
const EDITED = { title: "Planning meeting agenda (moved to Tuesday)", tags: ["home", "ideas"] };
const STALE_TITLE = "Typed in the second tab";

let browser;
let context;
let page; // the first tab; the stale-form step opens a second one
const pageErrors = [];

// ---------------------------------------------------------------------------------------------
// Helpers

/** The URL of a path on the site under test. */
const url = (p) => new URL(p, BASE_URL).href;

/** The form field with this name attribute (and value, for checkboxes). */
function field(p, name, value) {
  return value === undefined
    ? p.locator(`[name="${name}"]`)
    : p.locator(`[name="${name}"][value="${value}"]`);
}

/** Full-page PNG in the artifacts folder. */
async function screenshot(p, name) {
  await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Screenshots of the current page at laptop width and at phone width, then back to laptop. */
async function screenshotBothWidths(p, name) {
  await screenshot(p, `${name}-${LAPTOP.width}`);
  await p.setViewportSize(PHONE);
  await screenshot(p, `${name}-${PHONE.width}`);
  await p.setViewportSize(LAPTOP);
}

/**
 * Waits until the captcha picture has arrived. The site gives one try per picture and only
 * knows a picture once it has been fetched, so a form posted before that would be refused.
 */
async function captchaLoaded(p) {
  await p.waitForFunction(() => {
    const img = document.querySelector('img[src^="/captcha/"]');
    return img !== null && img.complete && img.naturalWidth > 0;
  });
}

/**
 * Clicks a submit button and waits for the page that the post leads to (after any redirect).
 * Answers the post's own response, so a caller can check its status (303, 400, 403...).
 */
async function submit(p, buttonName) {
  const [response] = await Promise.all([
    p.waitForResponse((r) => r.request().method() === "POST" && r.request().isNavigationRequest()),
    // A new document loads whether the post redirects or is answered in place.
    p.waitForEvent("load"),
    p.getByRole("button", { name: buttonName, exact: true }).click(),
  ]);
  return response;
}

/** The path (and query) of the page being shown. */
const pathOf = (p) => {
  const u = new URL(p.url());
  return u.pathname + u.search;
};

/** Checks that the header shows this user as logged in (their name and a "Log out" button). */
async function assertLoggedInAs(p, username) {
  const header = p.locator("header");
  assert.ok(await header.getByText(username, { exact: true }).isVisible(), `header shows ${username}`);
  assert.ok(await header.getByRole("button", { name: "Log out" }).isVisible(), "a Log out button");
}

/** Checks that the header shows a logged-out visitor (a "Log in" link, no name). */
async function assertLoggedOut(p) {
  const header = p.locator("header");
  assert.ok(await header.getByRole("link", { name: "Log in" }).isVisible(), "a Log in link");
  assert.equal(await header.getByText(USERNAME, { exact: true }).count(), 0, "no username shown");
  assert.equal(await header.getByRole("button", { name: "Log out" }).count(), 0, "no Log out button");
}

/** Logs out with the header's button; the site then shows the login page. */
async function logOut(p) {
  await submit(p, "Log out");
  assert.equal(pathOf(p), "/accounts/login/");
  await assertLoggedOut(p);
}

/** Fills in and sends the login form (already shown), captcha included. */
async function logIn(p, { remember }) {
  await captchaLoaded(p);
  await field(p, "username").fill(USERNAME);
  await field(p, "password").fill(PASSWORD);
  await field(p, "captcha").fill(CAPTCHA);
  await field(p, "remember").setChecked(remember);
  const response = await submit(p, "Log in");
  assert.equal(response.status(), 303, "the login post redirects");
  assert.equal(pathOf(p), "/notes/");
  await assertLoggedInAs(p, USERNAME);
}

/** The list entry of the note with this title (an empty locator when it is not listed). */
function listedNote(p, title) {
  return p.getByRole("listitem").filter({ has: p.getByRole("link", { name: title, exact: true }) });
}

/** Checks which tag names a note shows (read from the visible text inside `container`). */
async function assertTags(container, expected, absent) {
  for (const tag of expected) {
    assert.ok(await container.getByText(tag, { exact: true }).first().isVisible(), `tag ${tag} is shown`);
  }
  for (const tag of absent) {
    assert.equal(await container.getByText(tag, { exact: true }).count(), 0, `tag ${tag} is not shown`);
  }
}

// The steps build on each other (one visitor, one session), so once one fails the later ones
// are skipped rather than failing for the same reason; the failing tabs are kept as screenshots.
// A step whose remaining checks only look (change nothing) calls `settled()` before them: a
// failure after that point does not skip the steps that follow.
let failed = null;
function step(name, fn) {
  test(name, { timeout: STEP_TIMEOUT_MS }, async (t) => {
    if (failed) {
      t.skip(`skipped: the step "${failed}" failed`);
      return;
    }
    let isSettled = false;
    try {
      await fn(() => {
        isSettled = true;
      });
    } catch (err) {
      if (!isSettled) failed = name;
      const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
      for (const [i, p] of context.pages().entries()) {
        await screenshot(p, `FAILED-${slug}-tab${i + 1}`).catch(() => {});
      }
      throw err;
    } finally {
      // Extra tabs belong to the step that opened them.
      for (const p of context.pages().slice(1)) await p.close().catch(() => {});
    }
  });
}

// ---------------------------------------------------------------------------------------------

describe("Portico site in a browser", () => {
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // No sandbox: the tests run as root in containers. The rest keeps Chromium from reaching
      // out to anything but the site on loopback.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
      ],
    });
    context = await browser.newContext({ viewport: LAPTOP });
    context.setDefaultTimeout(ACTION_TIMEOUT_MS);
    context.on("page", (p) => p.on("pageerror", (e) => pageErrors.push(`${p.url()}: ${e.message}`)));
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
  });

  step("the register page shows a form with a captcha", async () => {
    const response = await page.goto(url("/accounts/register/"));
    assert.equal(response.status(), 200);
    assert.ok(await page.getByRole("heading", { name: "Create an account" }).isVisible());
    for (const name of ["username", "password", "password2", "captcha"]) {
      assert.ok(await field(page, name).isVisible(), `field ${name} is shown`);
    }
    await captchaLoaded(page);
    await screenshot(page, `register-${LAPTOP.width}`);
  });

  step("clicking the captcha picture loads a new one and clears the typed answer", async () => {
    const img = page.locator('img[src^="/captcha/"]');
    const before = await img.getAttribute("src");
    // An answer typed for the old picture is no use for the new one.
    await field(page, "captcha").fill("old answer");
    const [picture] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === "/captcha/"),
      img.click(),
    ]);
    assert.equal(picture.status(), 200);
    assert.match(picture.headers()["content-type"] ?? "", /^image\//);
    const after = await img.getAttribute("src");
    assert.notEqual(after, before, "the picture's src changes");
    assert.equal(pathOf(page), "/accounts/register/", "the page itself does not reload");
    await captchaLoaded(page);
    assert.equal(await field(page, "captcha").inputValue(), "");
  });

  step("registering logs the new user in and shows their notes", async () => {
    await field(page, "username").fill(USERNAME);
    await field(page, "password").fill(PASSWORD);
    await field(page, "password2").fill(PASSWORD);
    await field(page, "captcha").fill(CAPTCHA);
    const response = await submit(page, "Create account");
    assert.equal(response.status(), 303, "the registration post redirects");
    assert.equal(pathOf(page), "/notes/");
    await assertLoggedInAs(page, USERNAME);
    assert.ok(await page.getByRole("heading", { name: "Your notes" }).isVisible());
    assert.ok(await page.getByText("You have no notes yet").isVisible());
  });

  step("logging out shows the login page to a logged-out visitor", async () => {
    await logOut(page);
    assert.ok(await page.getByRole("heading", { name: "Log in" }).isVisible());
    // The notes need a login now.
    await page.goto(url("/notes/"));
    assert.match(pathOf(page), /^\/accounts\/login\/\?next=/);
  });

  step("the login page offers a recording instead of the picture, and a wrong answer is refused", async () => {
    await page.goto(url("/accounts/login/"));
    await captchaLoaded(page);
    const audio = page.locator("audio[controls]");
    assert.equal(await audio.count(), 1, "one audio player");
    assert.equal(await audio.getAttribute("preload"), "none", "fetched only when played");
    assert.ok(await page.getByText("Or listen and type the five digits you hear").isVisible());
    const src = await audio.getAttribute("src");
    assert.match(src, /^\/captcha\/audio\/\?lang=en$/);

    // The page's own cookies: the recording's challenge goes to this visitor's session.
    const wav = await page.request.get(url(src));
    assert.equal(wav.status(), 200);
    assert.equal(wav.headers()["content-type"], "audio/wav");
    assert.match(wav.headers()["cache-control"] ?? "", /no-store/);
    // The browser decodes it as sound of the promised length.
    const seconds = await page.evaluate(
      (s) =>
        new Promise((resolve, reject) => {
          const a = new Audio(s);
          a.addEventListener("loadedmetadata", () => resolve(a.duration));
          a.addEventListener("error", () => reject(new Error(`cannot decode ${s}`)));
        }),
      src,
    );
    assert.ok(seconds >= 4 && seconds <= 7, `${seconds} s`);

    await field(page, "username").fill(USERNAME);
    await field(page, "password").fill(PASSWORD);
    await field(page, "captcha").fill("00000");
    const response = await submit(page, "Log in");
    assert.equal(response.status(), 400, "a wrong answer is refused");
    assert.equal(pathOf(page), "/accounts/login/");
    assert.ok(await page.getByText(/did not match/).isVisible(), "says why");
    await assertLoggedOut(page);
  });

  step("logging in with the captcha and 'remember my username' shows the notes", async () => {
    await page.goto(url("/accounts/login/"));
    await captchaLoaded(page);
    await screenshotBothWidths(page, "login");
    await logIn(page, { remember: true });
  });

  step("a note created with two tags shows both", async () => {
    await page.getByRole("link", { name: "New note" }).click();
    await page.waitForURL(url("/notes/new/"));
    assert.ok(await page.getByRole("heading", { name: "New note" }).isVisible());
    await field(page, "title").fill(NOTE.title);
    await field(page, "body").fill(NOTE.body);
    for (const tag of NOTE.tags) await field(page, "tags", tag).check();
    const response = await submit(page, "Create note");
    assert.equal(response.status(), 303);
    assert.match(pathOf(page), /^\/notes\/\d+\/$/);
    assert.ok(await page.getByRole("heading", { name: NOTE.title }).isVisible());
    const main = page.locator("main");
    // The body is shown as typed, line breaks included.
    const body = main.getByText("Agenda for Monday:");
    assert.equal((await body.innerText()).trim(), NOTE.body);
    await assertTags(main, NOTE.tags, ["home", "todo", "reading"]);
    await screenshot(page, `note-${LAPTOP.width}`);
  });

  step("the list shows the note with its tags", async () => {
    await page.getByRole("link", { name: "All notes" }).click();
    await page.waitForURL(url("/notes/"));
    const item = listedNote(page, NOTE.title);
    assert.equal(await item.count(), 1, "the note is listed once");
    await assertTags(item, NOTE.tags, ["home"]);
    await screenshotBothWidths(page, "notes-list");
  });

  step("filtering by tag in the query string shows only matching notes", async () => {
    await page.goto(url("/notes/?tag=work"));
    assert.equal(await listedNote(page, NOTE.title).count(), 1, "?tag=work lists it");
    await page.goto(url("/notes/?tag=home"));
    assert.equal(await listedNote(page, NOTE.title).count(), 0, "?tag=home does not");
    assert.ok(await page.getByText("No note has this tag").isVisible());
  });

  step("filtering with the filter form shows only matching notes", async () => {
    await page.goto(url("/notes/"));
    const filter = page.locator("form", { has: page.getByRole("button", { name: "Filter" }) });
    await filter.locator('[name="tag"][value="ideas"]').check();
    await Promise.all([page.waitForURL(/\/notes\/\?tag=ideas$/), filter.getByRole("button", { name: "Filter" }).click()]);
    assert.equal(await listedNote(page, NOTE.title).count(), 1, "ideas lists it");
    // The form shows the chosen filter, so it can be changed from there.
    assert.ok(await page.locator('[name="tag"][value="ideas"]').isChecked());

    await page.locator('[name="tag"][value="ideas"]').uncheck();
    await page.locator('[name="tag"][value="todo"]').check();
    await Promise.all([page.waitForURL(/\/notes\/\?tag=todo$/), page.getByRole("button", { name: "Filter" }).click()]);
    assert.equal(await listedNote(page, NOTE.title).count(), 0, "todo does not");
    await page.getByRole("link", { name: "Show all notes" }).first().click();
    await page.waitForURL(url("/notes/"));
    assert.equal(await listedNote(page, NOTE.title).count(), 1);
  });

  step("editing the note changes its title and tags", async () => {
    await page.getByRole("link", { name: NOTE.title, exact: true }).click();
    await page.waitForURL(/\/notes\/\d+\/$/);
    await page.getByRole("link", { name: "Edit" }).click();
    await page.waitForURL(/\/notes\/\d+\/edit\/$/);
    assert.ok(await page.getByRole("heading", { name: "Edit note" }).isVisible());
    // The form starts from the note as it is.
    assert.equal(await field(page, "title").inputValue(), NOTE.title);
    assert.equal(await field(page, "body").inputValue(), NOTE.body);
    for (const tag of NOTE.tags) assert.ok(await field(page, "tags", tag).isChecked(), `${tag} checked`);
    assert.ok(!(await field(page, "tags", "home").isChecked()));
    await screenshot(page, `note-edit-${LAPTOP.width}`);

    await field(page, "title").fill(EDITED.title);
    await field(page, "tags", "work").uncheck();
    await field(page, "tags", "home").check();
    const response = await submit(page, "Save");
    assert.equal(response.status(), 303);
    assert.match(pathOf(page), /^\/notes\/\d+\/$/);
    assert.ok(await page.getByRole("heading", { name: EDITED.title }).isVisible());
    await assertTags(page.locator("main"), EDITED.tags, ["work"]);

    // The tag filter follows the edit.
    await page.goto(url("/notes/?tag=work"));
    assert.equal(await listedNote(page, EDITED.title).count(), 0, "no longer under work");
    await page.goto(url("/notes/?tag=home"));
    assert.equal(await listedNote(page, EDITED.title).count(), 1, "now under home");
    assert.equal(await listedNote(page, NOTE.title).count(), 0, "the old title is gone");
  });

  step("deleting the note via its confirm page removes it from the list", async () => {
    await page.getByRole("link", { name: EDITED.title, exact: true }).click();
    await page.waitForURL(/\/notes\/\d+\/$/);
    await page.getByRole("link", { name: "Delete" }).click();
    await page.waitForURL(/\/notes\/\d+\/delete\/$/);
    assert.ok(await page.getByRole("heading", { name: "Delete this note?" }).isVisible());
    assert.ok(await page.getByText(EDITED.title).isVisible(), "the confirm page names the note");
    const response = await submit(page, "Delete");
    assert.equal(response.status(), 303);
    assert.equal(pathOf(page), "/notes/");
    assert.equal(await listedNote(page, EDITED.title).count(), 0);
    assert.ok(await page.getByText("You have no notes yet").isVisible());
  });

  step("a form opened before logging out in another tab is refused kindly, input kept", async (settled) => {
    // The second tab shares the first one's cookies, as tabs of one browser do.
    const second = await context.newPage();
    await second.goto(url("/notes/new/"));
    await assertLoggedInAs(second, USERNAME);
    await field(second, "title").fill(STALE_TITLE);
    await field(second, "tags", "todo").check();

    // Meanwhile the first tab logs out, which ends the session the second tab's form was made for.
    await logOut(page);

    const response = await submit(second, "Create note");
    // The first tab is logged out, as the steps after this one expect, whatever the checks find.
    settled();
    assert.equal(response.status(), 403, "the stale post is refused");
    const text = await second.locator("body").innerText();
    assert.match(text, /opened before you logged (in or )?out|in another session/i, "says why");
    await screenshot(second, `stale-form-refused-${LAPTOP.width}`);
    assert.equal(await field(second, "title").count(), 1, "the refusal page shows the form again");
    assert.equal(await field(second, "title").inputValue(), STALE_TITLE, "the typed title is kept");
  });

  step("after logging out, the login page pre-fills the remembered username", async () => {
    await page.goto(url("/accounts/login/"));
    assert.equal(await field(page, "username").inputValue(), USERNAME);
    assert.ok(await field(page, "remember").isChecked(), "remember stays checked");
  });

  step("nothing was created by the refused form", async () => {
    await logIn(page, { remember: true });
    assert.equal(await listedNote(page, STALE_TITLE).count(), 0);
    assert.ok(await page.getByText("You have no notes yet").isVisible());
  });

  step("finally logging out", async () => {
    await logOut(page);
    await page.goto(url("/notes/"));
    assert.match(pathOf(page), /^\/accounts\/login\//, "the notes need a login again");
  });

  // Not a step: worth knowing even when the walk through the site stopped early.
  test("no page had a script error", () => {
    assert.deepEqual(pageErrors, []);
  });
});
