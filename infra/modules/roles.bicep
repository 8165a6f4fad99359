// Who may do what on the data planes (least privilege, scoped to the resource or queue):
//
// | principal                        | Service Bus                                   | Cosmos DB                  | Storage                                 |
// | control plane (Function App)     | Data Owner on the namespace (triggers, sends, | Built-in Data Contributor  | Blob Data Owner on the account (host    |
// |                                  | queue administration: BusAdmin)               | (sqlRoleAssignment)        | leases, deployment package, output)     |
// | agents (Azure nodes, on-prem)    | Data Sender on `events`; Data Receiver on     | none                       | Blob Data Contributor on the output     |
// |                                  | `nodes` and `replies` (session receivers)     |                            | container only                          |
// | the deployer (optional)          | none                                          | Built-in Data Contributor  | none                                    |
//
// Plus: Monitoring Metrics Publisher on Application Insights (the app's telemetry, Entra ID
// only) and Managed Identity Operator on the nodes' identity (the autoscaler attaches it to
// the VMs it creates). Virtual Machine Contributor on the node resource group is in nodes.bicep.
param serviceBusName string
param cosmosAccountName string
param storageAccountName string
param outputContainerName string
param appInsightsName string
param nodesIdentityName string
param controlPlanePrincipalId string
@description('Principal ids of every agent identity: the Azure nodes\' managed identity, on-prem service principals or Arc-enabled servers.')
param agentPrincipalIds array
@description('Principal id of the person deploying (azd: AZURE_PRINCIPAL_ID), for `hpc` bootstrap steps against Cosmos DB; empty: none.')
param deployerPrincipalId string = ''

var role = {
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  managedIdentityOperator: 'f1a07417-d97a-45cb-824c-7a7467783830'
}
var cosmosDataContributor = '00000000-0000-0000-0000-000000000002'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: serviceBusName
}
resource eventsQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: 'events'
}
resource nodesQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: 'nodes'
}
resource repliesQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = {
  parent: namespace
  name: 'replies'
}
resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = {
  name: cosmosAccountName
}
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}
resource outputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: outputContainerName
}
resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}
resource nodesIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: nodesIdentityName
}

// --- the control plane ----------------------------------------------------------------

resource cpServiceBus 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: namespace
  name: guid(namespace.id, controlPlanePrincipalId, role.serviceBusDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.serviceBusDataOwner)
    principalId: controlPlanePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource cpStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, controlPlanePrincipalId, role.storageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.storageBlobDataOwner)
    principalId: controlPlanePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource cpMetrics 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, controlPlanePrincipalId, role.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.monitoringMetricsPublisher)
    principalId: controlPlanePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource cpAttachNodesIdentity 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: nodesIdentity
  name: guid(nodesIdentity.id, controlPlanePrincipalId, role.managedIdentityOperator)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.managedIdentityOperator)
    principalId: controlPlanePrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource cpCosmos 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmos
  name: guid(cosmos.id, controlPlanePrincipalId, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: controlPlanePrincipalId
    scope: cosmos.id
  }
}

// --- agents ---------------------------------------------------------------------------

resource agentSend 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for id in agentPrincipalIds: {
  scope: eventsQueue
  name: guid(eventsQueue.id, id, role.serviceBusDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.serviceBusDataSender)
    principalId: id
    principalType: 'ServicePrincipal'
  }
}]

resource agentReceiveNodes 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for id in agentPrincipalIds: {
  scope: nodesQueue
  name: guid(nodesQueue.id, id, role.serviceBusDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.serviceBusDataReceiver)
    principalId: id
    principalType: 'ServicePrincipal'
  }
}]

resource agentReceiveReplies 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for id in agentPrincipalIds: {
  scope: repliesQueue
  name: guid(repliesQueue.id, id, role.serviceBusDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.serviceBusDataReceiver)
    principalId: id
    principalType: 'ServicePrincipal'
  }
}]

resource agentOutput 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for id in agentPrincipalIds: {
  scope: outputContainer
  name: guid(outputContainer.id, id, role.storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.storageBlobDataContributor)
    principalId: id
    principalType: 'ServicePrincipal'
  }
}]

// --- the deployer ---------------------------------------------------------------------

resource deployerCosmos 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = if (!empty(deployerPrincipalId)) {
  parent: cosmos
  name: guid(cosmos.id, deployerPrincipalId, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: deployerPrincipalId
    scope: cosmos.id
  }
}
