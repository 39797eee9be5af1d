// A professional's day with the fhir-kit-client library (npm): the médecin traitant
// finds their patient by INS (DMP TD0.2), deposits documents (TD2.1) and a document
// with its content in one transaction (ITI-65), lists the patient's documents page
// by page with the library's nextPage (TD3.1), reads one and its content (TD3.2),
// updates it with If-Match, reads its version history, and is refused another
// patient's documents. Exits non-zero at the first step that does not behave.
// Usage: node fhir_kit_workflow.mjs BASE_URL TOKEN NIR STRANGER_PATIENT_ID
import assert from 'node:assert/strict';
import { Client } from 'fhir-kit-client';

const [base, token, nir, stranger] = process.argv.slice(2);
const client = new Client({ baseUrl: base, customHeaders: { Authorization: `Bearer ${token}` } });
const INS = 'urn:oid:1.2.250.1.213.1.4.8';
const step = (text) => console.log(`- ${text}`);

const found = await client.search({ resourceType: 'Patient', searchParams: { identifier: `${INS}|${nir}` } });
assert.equal(found.entry.length, 1);
const patient = found.entry[0].resource;
step(`found the patient by INS: Patient/${patient.id}`);

const document = (code, day) => ({
  resourceType: 'DocumentReference',
  status: 'current',
  type: { coding: [{ system: 'http://loinc.org', code }] },
  category: [{ coding: [{ system: 'urn:oid:1.2.250.1.213.1.1.4.1', code: '10' }] }],
  subject: { reference: `Patient/${patient.id}` },
  date: `2024-04-0${day}T10:00:00+01:00`,
  content: [{ attachment: { contentType: 'text/plain', data: 'Q29tcHRlIHJlbmR1' } }],
});
for (let day = 1; day <= 4; day++) {
  const created = await client.create({ resourceType: 'DocumentReference', body: document('11488-4', day) });
  assert.equal(created.meta.versionId, '1');
}
step('deposited four documents (POST DocumentReference)');

const transaction = await client.transaction({
  body: {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        fullUrl: 'urn:uuid:0b5e8a84-0d3c-4a55-9b6e-000000000001',
        resource: { resourceType: 'Binary', contentType: 'application/pdf', securityContext: { reference: `Patient/${patient.id}` }, data: 'JVBERi0xLjQK' },
        request: { method: 'POST', url: 'Binary' },
      },
      {
        fullUrl: 'urn:uuid:0b5e8a84-0d3c-4a55-9b6e-000000000002',
        resource: { ...document('11502-2', 5), content: [{ attachment: { contentType: 'application/pdf', url: 'urn:uuid:0b5e8a84-0d3c-4a55-9b6e-000000000001' } }] },
        request: { method: 'POST', url: 'DocumentReference' },
      },
    ],
  },
});
assert.equal(transaction.type, 'transaction-response');
assert.ok(transaction.entry.every((entry) => entry.response.status.startsWith('201')));
step('deposited a document and its content in one transaction (ITI-65)');

const ids = [];
let page = await client.search({ resourceType: 'DocumentReference', searchParams: { patient: patient.id, _count: 2 } });
for (;;) {
  ids.push(...(page.entry ?? []).map((entry) => entry.resource.id));
  if (!page.link?.some((link) => link.relation === 'next')) break;
  page = await client.nextPage({ bundle: page });
}
assert.equal(ids.length, 5);
assert.equal(new Set(ids).size, 5);
step('listed the five documents two by two with nextPage');

const depositId = transaction.entry[1].response.location.split('/')[1];
const deposit = await client.read({ resourceType: 'DocumentReference', id: depositId });
const binaryId = deposit.content[0].attachment.url.split('/')[1];
const binary = await client.read({ resourceType: 'Binary', id: binaryId });
assert.equal(binary.contentType, 'application/pdf');
step(`read DocumentReference/${depositId} and its content Binary/${binaryId}`);

const updated = await client.update({
  resourceType: 'DocumentReference',
  id: depositId,
  body: { ...deposit, description: 'Relu' },
  options: { headers: { 'If-Match': `W/"${deposit.meta.versionId}"` } },
});
assert.equal(updated.meta.versionId, '2');
await assert.rejects(
  client.update({
    resourceType: 'DocumentReference',
    id: depositId,
    body: { ...deposit, description: 'Écrasé' },
    options: { headers: { 'If-Match': 'W/"1"' } },
  }),
  (error) => error.response?.status === 412,
);
step('updated it with If-Match (version 2); a stale If-Match gets 412');

const history = await client.history({ resourceType: 'DocumentReference', id: depositId });
assert.equal(history.entry.length, 2);
step('its history holds both versions');

await assert.rejects(
  client.search({ resourceType: 'DocumentReference', searchParams: { patient: stranger } }),
  (error) => error.response?.status === 403 && JSON.stringify(error.response.data).includes('R-ACC-3'),
);
step("was refused another patient's documents (R-ACC-3)");
console.log('fhir-kit-client: every step behaved');
