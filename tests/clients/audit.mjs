// Runs graphql-http's GraphQL-over-HTTP server audits against a running
// Podforge and prints one JSON line: every audit's id, name, status (ok, or
// error / warn / notice for a failed MUST / SHOULD / MAY) and reason. Called
// by tests/it/clients.rs, which decides what must pass.
//
//   node audit.mjs <http-url-of-/graphql>
import { auditServer } from 'graphql-http';

const [url] = process.argv.slice(2);
const results = await auditServer({ url });
const audits = results.map(({ id, name, status, reason }) => ({ id, name, status, reason: reason ?? null }));
process.stdout.write(JSON.stringify({ audits }) + '\n');
