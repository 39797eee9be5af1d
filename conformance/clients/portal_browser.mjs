// The portal (R-UI-1) in a real browser: Debian's Chromium driven by
// playwright-core, with axe-core run on every page (WCAG 2.1 A/AA). The holder's
// account is made through /account/, the codes read from the file notification
// channel; then, with the keyboard for the sign-in: every page checked and
// photographed, a document read and masked (an authorised professional's search no
// longer shows it), a professional blocked (their 403), a message answered, the
// history entry of a professional's access read, and the space opposed with its PDF
// proof downloaded.
// Usage: node portal_browser.mjs BASE OUTBOX NIR REPORTS PROFESSIONAL_TOKEN PATIENT DOCUMENT AXE_JS
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const [base, outbox, nir, reports, proToken, patient, documentId, axePath, doctorToken] = process.argv.slice(2);
const axeSource = fs.readFileSync(axePath, 'utf8');
const PASSWORD = 'Portail1!';
let steps = 0;
const violations = [];

function check(condition, what) {
  if (!condition) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  steps += 1;
  console.log(`ok: ${what}`);
}

async function code(kind, n) {
  for (let i = 0; i < 500; i++) {
    const lines = fs.existsSync(outbox) ? fs.readFileSync(outbox, 'utf8').split('\n').filter(Boolean) : [];
    const found = lines.map((line) => JSON.parse(line)).filter((m) => m.kind === kind);
    if (found.length > n) return found[n].text.match(/est ([A-Z0-9-]+)\./)[1];
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no ${kind} message`);
}

async function post(path, body) {
  const answer = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return [answer.status, await answer.json().catch(() => ({}))];
}

async function professionalSees() {
  const answer = await fetch(`${base}/DocumentReference?patient=${patient}`, { headers: { Authorization: `Bearer ${proToken}`, Accept: 'application/fhir+json' } });
  if (answer.status !== 200) return [answer.status, []];
  const bundle = await answer.json();
  return [200, (bundle.entry || []).filter((e) => e.search?.mode === 'match').map((e) => e.resource.id)];
}

// Checks the page with axe-core and saves its screenshot.
async function audit(page, name) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () =>
    await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  for (const v of result.violations) violations.push(`${name}: ${v.id} (${v.impact}) ${v.nodes.length} node(s): ${v.help}`);
  await page.screenshot({ path: `${reports}/portal-${name}.png`, fullPage: true });
  check(result.violations.length === 0, `${name}: axe-core finds no WCAG 2.1 A/AA violation`);
}

// The account, through the JSON API (R-ACT-1, R-ACT-2).
check((await post('/account/provisional-code', { nir, birthDate: '1980-04-02', channel: 'email' }))[0] === 202, 'a provisional code is asked for');
const [, enrolment] = await post('/account/first-sign-in', { nir, birthDate: '1980-04-02', code: await code('provisional-code', 0) });
check(typeof enrolment.ticket === 'string', 'first sign-in');
await post('/account/contacts', { ticket: enrolment.ticket, email: enrolment.email, mobile: '', channel: 'email' });
check((await post('/account/credentials', { ticket: enrolment.ticket, identifiant: 'portail.holder', password: PASSWORD, passwordConfirmation: PASSWORD }))[0] === 200, 'identifiant and password chosen');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
// axe-core is injected into each page: the pages' CSP (no script at all) would refuse it.
const context = await browser.newContext({ acceptDownloads: true, locale: 'fr-FR', bypassCSP: true });
const page = await context.newPage();
try {
  for (const [path, name] of [['/connexion', 'connexion'], ['/code-provisoire', 'code-provisoire'], ['/premiere-connexion', 'premiere-connexion']]) {
    await page.goto(base + path);
    await audit(page, name);
  }

  // The sign-in with the keyboard alone.
  await page.goto(`${base}/espace`);
  check(page.url().includes('/connexion?next='), 'the portal sends to the sign-in');
  const focusBy = async (id) => {
    for (let i = 0; i < 15; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement?.id) === id) return true;
    }
    return false;
  };
  check(await focusBy('identifiant'), 'the identifiant is reached with Tab');
  await page.keyboard.type('portail.holder');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#code');
  await audit(page, 'code-de-connexion');
  check(await focusBy('code'), 'the one-time code is reached with Tab');
  await page.keyboard.type(await code('sign-in-code', 0));
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/espace`);
  check((await page.textContent('h1')).startsWith('Bonjour'), 'signed in, the home page greets the holder');
  await audit(page, 'accueil');

  // Authorise a professional through the privacy page: they read the document.
  await page.goto(`${base}/espace/confidentialite`);
  await audit(page, 'confidentialite');
  await page.fill('#permit', '810000000077');
  await page.click('form[action="/espace/confidentialite/autoriser"] button');
  await page.waitForURL(/fait=oui/);
  let [status, seen] = await professionalSees();
  check(status === 200 && seen.includes(documentId), 'the authorised professional finds the document');

  // Read the document, then mask it: the professional no longer finds it.
  await page.goto(`${base}/espace/documents`);
  await audit(page, 'documents');
  await page.click(`a[href="/espace/documents/${documentId}"]`);
  await page.waitForURL(`${base}/espace/documents/${documentId}`);
  await audit(page, 'document');
  const content = await page.request.get(`${base}/espace/documents/${documentId}/contenu`);
  check(content.status() === 200 && content.headers()['content-type'] === 'application/pdf', 'the document opens (PDF, inline)');
  await page.goto(`${base}/espace/documents`);
  await page.click(`form[action="/espace/documents/${documentId}/masquer"] button`);
  await page.waitForURL(/fait=masque/);
  [status, seen] = await professionalSees();
  check(status === 200 && !seen.includes(documentId), 'masked: the professional no longer finds it');

  // Block the professional: their 403.
  await page.goto(`${base}/espace/confidentialite`);
  await page.fill('#block', '810000000077');
  await page.click('form[action="/espace/confidentialite/bloquer"] button');
  await page.waitForURL(/fait=oui/);
  [status] = await professionalSees();
  check(status === 403, 'blocked: the professional gets 403');

  // Answer the message.
  await page.goto(`${base}/espace/messages`);
  await audit(page, 'messages');
  await page.fill('textarea[name="texte"]', 'Merci, docteur.');
  await page.click('form[action$="/repondre"] button');
  await page.waitForURL(/fait=reponse/);
  check((await page.textContent('.notice')).includes('réponse'), 'the message is answered');

  // The history tells the professional's access.
  await page.goto(`${base}/espace/historique`);
  await audit(page, 'historique');
  check((await page.textContent('ol.history')).includes('810000000077'), "the history names the professional's access");

  // The first sign-in questions (seed 002), then the profile page; the médecin
  // traitant reads the answers over FHIR.
  await page.goto(`${base}/espace/profil/questions/taille`);
  await audit(page, 'profil-question-taille');
  check(await focusBy('valeur'), 'the height field is reached with Tab');
  await page.keyboard.type('1,68');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/espace/profil/questions/poids`);
  await page.click('button[name="passer"]');
  await page.waitForURL(`${base}/espace/profil/questions/maladies`);
  await audit(page, 'profil-question-maladies');
  await page.check('#oui');
  await page.fill('#texte', 'Asthme');
  await page.click('button:not([name])');
  await page.waitForURL(`${base}/espace/profil/questions/traitements`);
  await page.check('#non');
  await page.click('button:not([name])');
  await page.waitForURL(`${base}/espace/profil/questions/allergies`);
  await page.click('button[name="passer"]');
  await page.waitForURL(`${base}/espace/profil/questions/merci`);
  check((await page.textContent('h1')).includes('Merci'), 'the questions end with thanks');
  await page.goto(`${base}/espace/profil`);
  await audit(page, 'profil');
  const profile = await page.textContent('main');
  check(profile.includes('1,68 m') && profile.includes('Asthme'), 'the profile page shows the answers');
  const conditions = await fetch(`${base}/Condition?patient=${patient}`, { headers: { Authorization: `Bearer ${doctorToken}`, Accept: 'application/fhir+json' } });
  check(conditions.status === 200 && (await conditions.text()).includes('Asthme'), 'the médecin traitant reads the conditions over FHIR');

  for (const [path, name] of [['/compte', 'compte'], ['/compte/mot-de-passe', 'mot-de-passe'], ['/espace/documents/ajouter', 'ajouter-un-document']]) {
    await page.goto(base + path);
    await audit(page, name);
  }

  // Oppose, confirmed, with the PDF proof downloaded.
  await page.goto(`${base}/espace/mon-espace`);
  await audit(page, 'mon-espace');
  await page.check('#oppose');
  await page.click('form[action="/espace/mon-espace"] button[type="submit"]');
  await page.waitForSelector('text=Je confirme');
  await audit(page, 'mon-espace-confirmation');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('button[name="confirmed"]')]);
  const proof = `${reports}/justificatif-opposition.pdf`;
  await download.saveAs(proof);
  const pdf = fs.readFileSync(proof, 'latin1');
  check(pdf.startsWith('%PDF-') && pdf.includes('startxref') && pdf.trimEnd().endsWith('%%EOF'), 'the proof of opposition downloads as a PDF');
} finally {
  await browser.close();
}
if (violations.length) console.log(violations.join('\n'));
console.log(`${steps} steps: every portal step behaved`);
