// Subscribes to a podcast's generation progress with a real npm client and
// prints one JSON line with what happened. Called by tests/it/clients.rs.
//
//   node subscribe.mjs <graphql-ws|subscriptions-transport-ws> <ws-url> <token> <podcast-id>
//
// Output: {"events": [...], "completed": true} when the stream completed, or
// {"closeCode": N, "error": "..."} when the server refused the connection
// (graphql-ws), or {"refused": true, "connectionError": ..., "error": ...}
// (subscriptions-transport-ws: the connection callback's error and the one
// the subscriber got).
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { SubscriptionClient } from 'subscriptions-transport-ws';

const [library, url, token, podcastId] = process.argv.slice(2);
const query = `subscription($id: ID!) {
  generationProgress(podcastId: $id) { seq kind stage status progress message }
}`;
const print = (value) => {
  process.stdout.write(JSON.stringify(value) + '\n');
  process.exit(0);
};
setTimeout(() => print({ error: 'timed out after 60 s' }), 60_000).unref();

if (library === 'graphql-ws') {
  let closeCode = null;
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    on: { closed: (event) => { closeCode = event.code; } },
  });
  const events = [];
  client.subscribe(
    { query, variables: { id: podcastId } },
    {
      next: (result) => {
        if (result.errors) print({ error: JSON.stringify(result.errors), events });
        events.push(result.data.generationProgress);
      },
      error: (err) => print({ closeCode: err?.code ?? closeCode, error: String(err?.reason ?? err) }),
      complete: () => {
        client.dispose();
        print({ events, completed: true });
      },
    },
  );
} else if (library === 'subscriptions-transport-ws') {
  const events = [];
  let connectionError = null;
  const client = new SubscriptionClient(
    url,
    {
      reconnect: false,
      connectionParams: { authorization: `Bearer ${token}` },
      connectionCallback: (error) => {
        // The legacy protocol refuses with a connection_error message, which
        // reaches only this callback; subscribers get an `error` each.
        if (error) connectionError = error;
      },
    },
    WebSocket,
  );
  client.request({ query, variables: { id: podcastId } }).subscribe({
    next: (result) => {
      if (result.errors) print({ error: JSON.stringify(result.errors), events });
      events.push(result.data.generationProgress);
    },
    error: (err) =>
      print({ refused: connectionError !== null, connectionError, error: JSON.stringify(err), events }),
    complete: () => {
      client.close();
      print({ events, completed: true });
    },
  });
} else {
  print({ error: `unknown client library ${library}` });
}
