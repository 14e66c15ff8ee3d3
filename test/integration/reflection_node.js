// gRPC reflection as npm's grpc-js-reflection-client sees it (test_reflection.py runs this):
//   node reflection_node.js SOCKET v1alpha|v1
// Prints "services A,B", "methods M1,M2,..", one "<method> path <path> server_stream <bool>"
// line per method, and "unknown rejected <message>" for a symbol the server does not know.
'use strict';
const grpc = require('@grpc/grpc-js');
const { GrpcReflection } = require('grpc-js-reflection-client');

async function main() {
  const [sock, version] = process.argv.slice(2);
  const client = new GrpcReflection('unix:' + sock, grpc.credentials.createInsecure(), {},
                                    version);
  const services = await client.listServices();
  console.log('services ' + services.join(','));
  const methods = await client.listMethods('SpiffeWorkloadAPI');
  console.log('methods ' + methods.map((m) => m.name).join(','));
  for (const m of methods) {
    console.log(`${m.name} path ${m.definition.path} server_stream ${m.definition.responseStream}`);
  }
  try {
    await client.getDescriptorBySymbol('NoSuchService');
    console.log('unknown accepted');
  } catch (e) {
    console.log('unknown rejected ' + e.message);
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
