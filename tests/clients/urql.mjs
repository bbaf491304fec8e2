// urql (@urql/core 6) against Podforge with its documented default set-up:
// cacheExchange and fetchExchange (queries go by GET, the default
// `preferGetMethod: 'within-url-limit'`), plus subscriptionExchange over
// graphql-ws. Called by tests/it/clients.rs; prints one JSON line.
//
//   node urql.mjs <http-url> <ws-url>
import { Client, cacheExchange, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';

const [httpUrl, wsUrl] = process.argv.slice(2);
const fail = (error) => {
  process.stdout.write(JSON.stringify({ error: String(error?.stack ?? error) }) + '\n');
  process.exit(1);
};
setTimeout(() => fail('timed out after 60 s'), 60_000).unref();

const requests = [];
const recordingFetch = async (url, init) => {
  const response = await fetch(url, init);
  requests.push({ method: init?.method ?? 'GET', status: response.status });
  return response;
};

let token = null;
const ws = createWsClient({
  url: wsUrl,
  webSocketImpl: WebSocket,
  connectionParams: () => ({ authorization: `Bearer ${token}` }),
});
const client = new Client({
  url: httpUrl,
  fetch: recordingFetch,
  fetchOptions: () => (token ? { headers: { authorization: `Bearer ${token}` } } : {}),
  exchanges: [
    cacheExchange,
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query || '' };
        return {
          subscribe(sink) {
            const unsubscribe = ws.subscribe(input, sink);
            return { unsubscribe };
          },
        };
      },
    }),
  ],
});

const must = (result) => {
  if (result.error) throw result.error;
  return result.data;
};
const REGISTER = gql`
  mutation Register($email: String!, $password: String!) {
    register(input: { email: $email, password: $password }) { accessToken }
  }
`;

try {
  const email = `urql-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  token = must(await client.mutation(REGISTER, { email, password: 'urql six by default' }).toPromise()).register.accessToken;
  const me = must(await client.query(gql`query Me { me { id email } }`, {}).toPromise()).me;
  const { id } = must(
    await client.mutation(gql`mutation G($t: String!) { generatePodcast(input: { topic: $t }) { id } }`, { t: 'Tides by urql' }).toPromise(),
  ).generatePodcast;

  // A generation followed to completion.
  const events = await new Promise((resolve, reject) => {
    const seen = [];
    client
      .subscription(gql`subscription P($id: ID!) { generationProgress(podcastId: $id) { seq kind status } }`, { id })
      .subscribe((r) => {
        if (r.error) return reject(r.error);
        // When a subscription completes, urql emits its last result once more
        // with hasNext: false (a client-side repeat, not a server message).
        if (r.hasNext === false) return;
        seen.push(r.data.generationProgress);
        if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(r.data.generationProgress.kind)) resolve(seen);
      });
  });

  // libraryUpdates: two changes to the finished podcast, each seen once.
  const updates = [];
  const { unsubscribe } = client
    .subscription(gql`subscription L { libraryUpdates { change podcastId podcast { title } } }`, {})
    .subscribe((r) => {
      if (r.error) return fail(r.error);
      updates.push(r.data.libraryUpdates);
    });
  await new Promise((r) => setTimeout(r, 500)); // the subscription is live
  must(
    await client
      .mutation(gql`mutation U($id: ID!) { updatePodcast(id: $id, input: { title: "Renamed" }) { id title } }`, { id })
      .toPromise(),
  );
  must(await client.mutation(gql`mutation D($id: ID!) { deletePodcast(id: $id) }`, { id }).toPromise());
  await new Promise((r) => setTimeout(r, 1500)); // time for any duplicate to arrive
  unsubscribe();

  process.stdout.write(
    JSON.stringify({
      me,
      podcast: id,
      events: events.map((e) => ({ seq: e.seq, kind: e.kind })),
      updates,
      requests,
    }) + '\n',
  );
  process.exit(0);
} catch (error) {
  fail(error);
}
