// An independent libp2p peer (js-libp2p, pinned in tools/package.json) for the
// interoperability test `tests/it/interop.rs`: it dials a Fabstir node, reads its Identify,
// pings it, and asks the Fabstir DHT (`/fabstir/kad/1.0.0`) for a model's providers with a
// standard Kademlia GET_PROVIDERS (`findProviders`). The provider key is computed here from the model id, as
// docs/PROTOCOL.md says (the multihash of a CIDv1, raw codec, of the id's 32 bytes). Prints one
// JSON line with what it learned.
//
// Usage: node js-peer.mjs <node multiaddr with /p2p/> <model id, 64 hex digits>

// Node 20 has no Promise.withResolvers, which js-libp2p uses: the polyfill must be in place
// before libp2p's modules load, so they are imported dynamically below.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const [target, modelHex] = process.argv.slice(2)
if (target === undefined || !/^[0-9a-f]{64}$/.test(modelHex ?? '')) {
  console.error('usage: node js-peer.mjs <multiaddr> <model id hex>')
  process.exit(2)
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const { sha256 } = await import('multiformats/hashes/sha2')

const RAW_CODEC = 0x55

const node = await createLibp2p({
  addresses: { listen: [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  // The monitor pings every connection on its own; a node answers one ping stream per
  // connection at a time (rust-libp2p drops the older), so the only ping is ours.
  connectionMonitor: { enabled: false },
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: '/fabstir/kad/1.0.0',
      clientMode: true,
      // Loopback addresses are what the test has.
      peerInfoMapper: passthroughMapper
    })
  }
})

const deadline = (ms, what) => new Promise((_, reject) =>
  setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms).unref())

try {
  const ma = multiaddr(target)
  const identified = new Promise((resolve) => {
    node.addEventListener('peer:identify', (event) => resolve(event.detail))
  })
  const connection = await node.dial(ma)
  const info = await Promise.race([identified, deadline(10_000, 'identify')])
  // The node pings every new connection at once; a ping of ours crossing it on the fresh
  // connection can find its stream closed, so it is tried again.
  let rttMs
  for (let attempt = 1; rttMs === undefined; attempt++) {
    try {
      rttMs = await node.services.ping.ping(connection.remotePeer)
    } catch (error) {
      if (attempt === 3) throw error
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }

  const modelId = Uint8Array.from(Buffer.from(modelHex, 'hex'))
  const cid = CID.createV1(RAW_CODEC, await sha256.digest(modelId))
  const providers = new Set()
  // The peer joins the DHT's routing table once identified; ask until it answers.
  for (let attempt = 0; attempt < 20 && providers.size === 0; attempt++) {
    for await (const event of node.services.dht.findProviders(cid, { signal: AbortSignal.timeout(5_000) })) {
      if (event.name === 'PROVIDER') {
        for (const provider of event.providers) providers.add(provider.id.toString())
      }
    }
    if (providers.size === 0) await new Promise((resolve) => setTimeout(resolve, 250))
  }

  console.log(JSON.stringify({
    peer: connection.remotePeer.toString(),
    agentVersion: info.agentVersion,
    protocolVersion: info.protocolVersion,
    protocols: info.protocols,
    rttMs,
    providerKey: Buffer.from(cid.multihash.bytes).toString('hex'),
    providers: [...providers]
  }))
} finally {
  await node.stop()
}
