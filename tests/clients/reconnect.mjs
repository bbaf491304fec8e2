// The stock graphql-ws client following a generation while its access token
// expires: the server closes with 4403, the client reconnects on its own,
// `connectionParams` (a function, so it runs again) signs in for a fresh
// token, and the subscription is sent again with `afterSeq` read through a
// getter, so it resumes after the last event the app saw (the set-up README
// shows). Called by tests/it/clients.rs; prints one JSON line.
//
//   node reconnect.mjs <http-url> <ws-url> <email> <password> <podcast-id>
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [httpUrl, wsUrl, email, password, podcastId] = process.argv.slice(2);
const print = (value, code = 0) => {
  process.stdout.write(JSON.stringify(value) + '\n');
  process.exit(code);
};
setTimeout(() => print({ error: 'timed out after 60 s' }, 1), 60_000).unref();

let signIns = 0;
async function freshToken() {
  signIns += 1;
  const response = await fetch(httpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      query: 'mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken } }',
      variables: { e: email, p: password },
    }),
  });
  return (await response.json()).data.login.accessToken;
}

const closes = [];
let connections = 0;
const client = createClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: async () => ({ authorization: `Bearer ${await freshToken()}` }),
  retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
  on: {
    connected: () => { connections += 1; },
    closed: (event) => { closes.push(event.code); },
  },
});

let lastSeq = null;
const events = [];
client.subscribe(
  {
    query: `subscription($id: ID!, $after: Int) {
      generationProgress(podcastId: $id, afterSeq: $after) { seq kind }
    }`,
    // Read each time the client (re)sends the subscription.
    variables: {
      id: podcastId,
      get after() { return lastSeq; },
    },
  },
  {
    next: (result) => {
      if (result.errors) print({ error: JSON.stringify(result.errors), events }, 1);
      const event = result.data.generationProgress;
      events.push(event);
      lastSeq = event.seq;
    },
    error: (err) => print({ error: String(err?.reason ?? err), events, closes }, 1),
    complete: () => {
      client.dispose();
      print({ events, connections, closes, signIns, completed: true });
    },
  },
);
