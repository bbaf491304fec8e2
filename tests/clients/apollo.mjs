// Apollo Client 4 against Podforge, set up as its documentation does: an
// HttpLink for queries and mutations and a GraphQLWsLink (graphql-ws) for
// subscriptions, split on the operation type, and an InMemoryCache with
// `relayStylePagination` for `Query.podcasts`. Optionally the persisted-query
// link in front of the HttpLink (APQ, default options). Called by
// tests/it/clients.rs; prints one JSON line with what it saw.
//
//   node apollo.mjs <http-url> <ws-url> <apq|plain>
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { getMainDefinition, relayStylePagination } from '@apollo/client/utilities';
import { createClient } from 'graphql-ws';
import { createHash } from 'node:crypto';
import WebSocket from 'ws';

const [httpUrl, wsUrl, mode] = process.argv.slice(2);
const fail = (error) => {
  process.stdout.write(JSON.stringify({ error: String(error?.stack ?? error) }) + '\n');
  process.exit(1);
};
setTimeout(() => fail('timed out after 60 s'), 60_000).unref();

// Every HTTP request the links make, to show what went over the wire.
const requests = [];
const recordingFetch = async (url, init) => {
  const response = await fetch(url, init);
  const body = init?.body ? JSON.parse(init.body) : Object.fromEntries(new URL(url).searchParams);
  const json = await response.clone().json().catch(() => null);
  requests.push({
    method: init?.method ?? 'GET',
    status: response.status,
    contentType: response.headers.get('content-type'),
    hasQuery: typeof body.query === 'string' && body.query.length > 0,
    hashed: JSON.stringify(body.extensions ?? '').includes('sha256Hash'),
    errorCodes: (json?.errors ?? []).map((e) => e.extensions?.code),
    hasData: json?.data != null,
  });
  return response;
};

let token = null;
const auth = new ApolloLink((operation, forward) => {
  operation.setContext(({ headers = {} }) => ({
    headers: token ? { ...headers, authorization: `Bearer ${token}` } : headers,
  }));
  return forward(operation);
});
let http = new HttpLink({ uri: httpUrl, fetch: recordingFetch });
if (mode === 'apq') {
  http = new PersistedQueryLink({ sha256: (q) => createHash('sha256').update(q).digest('hex') }).concat(http);
}
const ws = new GraphQLWsLink(
  createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: () => ({ authorization: `Bearer ${token}` }),
  }),
);
const link = ApolloLink.split(
  ({ query }) => {
    const def = getMainDefinition(query);
    return def.kind === 'OperationDefinition' && def.operation === 'subscription';
  },
  ws,
  auth.concat(http),
);
const client = new ApolloClient({
  link,
  cache: new InMemoryCache({
    typePolicies: { Query: { fields: { podcasts: relayStylePagination() } } },
  }),
});

const REGISTER = gql`
  mutation Register($email: String!, $password: String!) {
    register(input: { email: $email, password: $password }) { accessToken user { id email } }
  }
`;
const GENERATE = gql`
  mutation Generate($topic: String!) { generatePodcast(input: { topic: $topic }) { id status } }
`;
const PODCASTS = gql`
  query Podcasts($first: Int, $after: String) {
    podcasts(first: $first, after: $after) {
      totalCount
      edges { cursor node { id topic status } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const ME = gql`query Me { me { id email } }`;
const PROGRESS = gql`
  subscription Progress($id: ID!) {
    generationProgress(podcastId: $id) { seq kind status podcast { id status } }
  }
`;
const STATUS = gql`fragment PodcastStatus on Podcast { id status }`;

try {
  const email = `apollo-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
  const registered = await client.mutate({
    mutation: REGISTER,
    variables: { email, password: 'apollo client four works' },
  });
  token = registered.data.register.accessToken;

  const ids = [];
  for (const topic of ['Tides one', 'Tides two', 'Tides three']) {
    const { data } = await client.mutate({ mutation: GENERATE, variables: { topic } });
    ids.push(data.generatePodcast.id);
  }
  const me = await client.query({ query: ME });
  // The same query again from the network: with APQ, by its hash alone.
  const again = await client.query({ query: ME, fetchPolicy: 'network-only' });

  // Pages merge in the cache through the Query.podcasts type policy.
  const watch = client.watchQuery({ query: PODCASTS, variables: { first: 2 } });
  const first = await new Promise((resolve, reject) => {
    const sub = watch.subscribe({
      next: (r) => { if (r.data) { sub.unsubscribe(); resolve(r.data); } },
      error: reject,
    });
  });
  await watch.fetchMore({ variables: { after: first.podcasts.pageInfo.endCursor } });
  const merged = client.readQuery({ query: PODCASTS, variables: { first: 2 } });

  // A generation followed live to its end over the websocket.
  const target = ids[0];
  const events = await new Promise((resolve, reject) => {
    const seen = [];
    client.subscribe({ query: PROGRESS, variables: { id: target } }).subscribe({
      next: (r) => {
        if (r.error) return reject(r.error);
        seen.push(r.data.generationProgress);
      },
      error: reject,
      complete: () => resolve(seen),
    });
  });
  const cached = client.readFragment({ id: `Podcast:${target}`, fragment: STATUS });

  process.stdout.write(
    JSON.stringify({
      target,
      me: me.data.me,
      meAgain: again.data.me,
      firstPage: first.podcasts.edges.map((e) => e.node.id),
      mergedEdges: merged.podcasts.edges.map((e) => e.node.id),
      totalCount: merged.podcasts.totalCount,
      events: events.map((e) => ({ seq: e.seq, kind: e.kind, status: e.status })),
      cachedStatus: cached?.status ?? null,
      requests,
    }) + '\n',
  );
  process.exit(0);
} catch (error) {
  fail(error);
}
