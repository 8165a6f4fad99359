// The Service Bus namespace (Standard: sessions, duplicate detection, scheduled messages;
// Basic has none of them) and the queues of the message flow, read from ../queues.json,
// which tests/test_infra.py checks against shared/wiring.py declare_queues(). Queues are
// declared here because the data-plane identities of agents cannot (Manage right).
param location string
param tags object
param namespaceName string

var spec = loadJsonContent('../queues.json')

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [for q in spec.queues: {
  parent: namespace
  name: q.name
  properties: {
    requiresSession: q.requiresSession
    lockDuration: q.lockDuration
    maxDeliveryCount: q.maxDeliveryCount
    requiresDuplicateDetection: spec.common.requiresDuplicateDetection
    duplicateDetectionHistoryTimeWindow: spec.common.duplicateDetectionHistoryTimeWindow
    deadLetteringOnMessageExpiration: spec.common.deadLetteringOnMessageExpiration
    defaultMessageTimeToLive: spec.common.defaultMessageTimeToLive
    enablePartitioning: false
  }
}]

output id string = namespace.id
output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
