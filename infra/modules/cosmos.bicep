// The Cosmos DB (NoSQL) account of HPC_STORE=cosmos: one database, the containers and
// indexing policies of ../cosmos-containers.json (checked by tests/test_infra.py against
// shared/adapters/cosmos_docs.py). Keys are off: the Function App reaches it with its
// managed identity (a Cosmos DB data-plane role assignment, made in roles.bicep).
param location string
param tags object
param accountName string
param databaseName string = 'hybridhpc'
@description('Serverless (billed per request unit, no minimum) or provisioned autoscale throughput.')
param serverless bool = true
@description('Provisioned mode only: the database\'s shared autoscale maximum (RU/s).')
@minValue(1000)
param autoscaleMaxThroughput int = 1000

var spec = loadJsonContent('../cosmos-containers.json')

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    //checkov:skip=CKV_AZURE_101:the Function App reaches Cosmos DB over its public endpoint (no VNet integration here); keys are off, Entra ID only
    //checkov:skip=CKV_AZURE_99:no IP filter: the Function App's outbound addresses are not fixed on the Flex Consumption plan without VNet integration
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: { defaultConsistencyLevel: 'Session' }
    locations: [
      { locationName: location, failoverPriority: 0, isZoneRedundant: false }
    ]
    capabilities: serverless ? [ { name: 'EnableServerless' } ] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: { tier: 'Continuous7Days' }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: { id: databaseName }
    options: serverless ? {} : { autoscaleSettings: { maxThroughput: autoscaleMaxThroughput } }
  }
}

resource containers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [for c in spec.containers: {
  parent: database
  name: c.id
  properties: {
    resource: {
      id: c.id
      partitionKey: { paths: [ c.partitionKey ], kind: 'Hash', version: 2 }
      indexingPolicy: c.indexingPolicy
      // idempotency keys expire by their documents' ttl (24 h): time-to-live on, no default
      defaultTtl: contains(c, 'defaultTtl') ? c.defaultTtl : null
    }
  }
}]

output id string = account.id
output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
