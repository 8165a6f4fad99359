// HybridHPC in Azure: the serverless head node (Functions, Service Bus, Cosmos DB, Storage)
// and the network of the Azure compute nodes. `azd up` deploys it (azure.yaml); so does
//   az deployment sub create -l LOCATION -f infra/main.bicep -p environmentName=NAME location=LOCATION
// docs/deploy.md walks through it, and through connecting an on-premises agent afterwards.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the environment (azd: AZURE_ENV_NAME); names the resource groups and tags the node VMs.')
param environmentName string

@minLength(1)
@description('Region of every resource.')
param location string

@description('Object id of the person deploying (azd: AZURE_PRINCIPAL_ID): gets Cosmos DB data access to create the first admin token. Empty: none.')
param principalId string = ''

@description('Object ids of on-premises agent identities (service principals or Arc-enabled servers), comma-separated: they get send/receive on the agent queues and write on task output.')
param onPremAgentPrincipalIds string = ''

@allowed([ '3.11', '3.12' ])
param pythonVersion string = '3.11'

@description('Most Function App instances (Flex Consumption, 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Cosmos DB serverless (pay per request unit; best below a few million tasks a month) or provisioned autoscale.')
param cosmosServerless bool = true

@description('Days task output is kept in Blob storage (0: forever).')
@minValue(0)
param outputRetentionDays int = 90

@description('HPC_RECONCILE_SCHEDULE (NCRONTAB, seconds first). Every 30 s: 86,400 runs a month; nodes are declared lost within the heartbeat timeout plus this.')
param reconcileSchedule string = '*/30 * * * * *'

@description('HPC_AUTOSCALE_SCHEDULE. Once a minute at second 15, apart from the reconciler: 43,800 runs a month (HPC Pack checks every 5 minutes by default).')
param autoscaleSchedule string = '15 * * * * *'

@description('HPC_HEARTBEAT_INTERVAL_S of the control plane and of every agent (docs/functions.md, docs/cost.md: each heartbeat costs a message and ~10 RU).')
param heartbeatIntervalSeconds int = 20

@description('HPC_HEARTBEAT_TIMEOUT_S: must exceed the reconcile period (docs/functions.md).')
param heartbeatTimeoutSeconds int = 90

@description('HPC_AZURE_VM_SIZE: the size of an Azure node when neither `hpc node add --size` nor its group names one.')
param nodeVmSize string = 'Standard_D2s_v5'

@description('HPC_AZURE_IMAGE: Publisher:Offer:Sku:Version of a Linux image with cloud-init and python3-venv, or an image resource id.')
param nodeImage string = 'Canonical:ubuntu-24_04-lts:server:latest'

@description('HPC_AZURE_ADMIN_USERNAME of the node VMs (SSH key only).')
param nodeAdminUsername string = 'hpcadmin'

@description('HPC_AZURE_SSH_PUBLIC_KEY of the node VMs. Empty: no Azure nodes (HPC_COMPUTE=none), on-premises agents only.')
param nodeSshPublicKey string = ''

@description('HPC_AZURE_AGENT_PACKAGE: the pip requirement a node VM installs to get the agent. Empty: no Azure nodes (HPC_COMPUTE=none).')
param nodeAgentPackage string = ''

param nodeAddressPrefix string = '10.40.0.0/16'
param nodeSubnetPrefix string = '10.40.0.0/20'

var tags = { 'azd-env-name': environmentName, app: 'hybridhpc' }
var token = toLower(uniqueString(subscription().id, environmentName, location))
var azureNodes = !empty(nodeSshPublicKey) && !empty(nodeAgentPackage)
var onPremAgents = empty(onPremAgentPrincipalIds) ? [] : split(replace(onPremAgentPrincipalIds, ' ', ''), ',')

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

resource nodeRg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}-nodes'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  scope: rg
  name: 'identity'
  params: {
    location: location
    tags: tags
    functionsIdentityName: 'id-func-${token}'
    nodesIdentityName: 'id-nodes-${token}'
  }
}

module monitoring 'modules/monitoring.bicep' = {
  scope: rg
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: 'log-${token}'
    appInsightsName: 'appi-${token}'
  }
}

module storage 'modules/storage.bicep' = {
  scope: rg
  name: 'storage'
  params: {
    location: location
    tags: tags
    accountName: 'st${token}'
    outputContainerName: 'output'
    outputRetentionDays: outputRetentionDays
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  scope: rg
  name: 'servicebus'
  params: {
    location: location
    tags: tags
    namespaceName: 'sb-${token}'
  }
}

module cosmos 'modules/cosmos.bicep' = {
  scope: rg
  name: 'cosmos'
  params: {
    location: location
    tags: tags
    accountName: 'cosmos-${token}'
    databaseName: 'hybridhpc'
    serverless: cosmosServerless
  }
}

module nodes 'modules/nodes.bicep' = {
  scope: nodeRg
  name: 'nodes'
  params: {
    location: location
    tags: tags
    vnetName: 'vnet-nodes-${token}'
    addressPrefix: nodeAddressPrefix
    subnetPrefix: nodeSubnetPrefix
    controlPlanePrincipalId: identity.outputs.functionsPrincipalId
  }
}

module roles 'modules/roles.bicep' = {
  scope: rg
  name: 'roles'
  params: {
    serviceBusName: serviceBus.outputs.name
    cosmosAccountName: cosmos.outputs.name
    storageAccountName: storage.outputs.name
    outputContainerName: storage.outputs.outputContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    nodesIdentityName: identity.outputs.nodesName
    controlPlanePrincipalId: identity.outputs.functionsPrincipalId
    agentPrincipalIds: union([ identity.outputs.nodesPrincipalId ], onPremAgents)
    deployerPrincipalId: principalId
  }
}

// The HPC_* app settings, named as shared/settings.py reads them (prefix HPC_).
var hpcSettings = {
  HPC_HOME: '/tmp/hybridhpc'
  HPC_STORE: 'cosmos'
  HPC_COSMOS_ENDPOINT: cosmos.outputs.endpoint
  HPC_COSMOS_DATABASE: cosmos.outputs.databaseName
  HPC_BUS: 'servicebus'
  // the namespace: read from ServiceBusConnection__fullyQualifiedNamespace (functionapp.bicep)
  HPC_OUTPUT: 'blob'
  HPC_BLOB_ACCOUNT_URL: storage.outputs.blobEndpoint
  HPC_BLOB_CONTAINER: storage.outputs.outputContainerName
  HPC_RECONCILE_SCHEDULE: reconcileSchedule
  HPC_AUTOSCALE_SCHEDULE: autoscaleSchedule
  HPC_HEARTBEAT_INTERVAL_S: string(heartbeatIntervalSeconds)
  HPC_HEARTBEAT_TIMEOUT_S: string(heartbeatTimeoutSeconds)
  HPC_COMPUTE: azureNodes ? 'azure' : 'none'
  HPC_AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
  HPC_AZURE_RESOURCE_GROUP: nodeRg.name
  HPC_AZURE_LOCATION: location
  HPC_AZURE_SUBNET_ID: nodes.outputs.subnetId
  HPC_AZURE_IMAGE: nodeImage
  HPC_AZURE_VM_SIZE: nodeVmSize
  HPC_AZURE_ADMIN_USERNAME: nodeAdminUsername
  HPC_AZURE_SSH_PUBLIC_KEY: nodeSshPublicKey
  HPC_AZURE_NODE_IDENTITY_ID: identity.outputs.nodesId
  HPC_AZURE_NODE_IDENTITY_CLIENT_ID: identity.outputs.nodesClientId
  HPC_AZURE_CLIENT_ID: identity.outputs.functionsClientId
  HPC_AZURE_AGENT_PACKAGE: nodeAgentPackage
  HPC_AZURE_CLUSTER: environmentName
}

module functionApp 'modules/functionapp.bicep' = {
  scope: rg
  name: 'functionapp'
  dependsOn: [ roles ]
  params: {
    location: location
    tags: tags
    planName: 'plan-${token}'
    appName: 'func-${token}'
    identityId: identity.outputs.functionsId
    identityClientId: identity.outputs.functionsClientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    appInsightsConnectionString: monitoring.outputs.connectionString
    hpcSettings: hpcSettings
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
  }
}

// azd writes these to .azure/<env>/.env; `azd env get-values` gives a CLI or an agent its settings.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output HPC_API_URL string = functionApp.outputs.url
output HPC_COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output HPC_COSMOS_DATABASE string = cosmos.outputs.databaseName
output HPC_BUS string = 'servicebus'
output HPC_SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output HPC_OUTPUT string = 'blob'
output HPC_BLOB_ACCOUNT_URL string = storage.outputs.blobEndpoint
output HPC_BLOB_CONTAINER string = storage.outputs.outputContainerName
output HPC_HEARTBEAT_INTERVAL_S string = string(heartbeatIntervalSeconds)
output HPC_HEARTBEAT_TIMEOUT_S string = string(heartbeatTimeoutSeconds)
output HPC_NODES_RESOURCE_GROUP string = nodeRg.name
output HPC_NODES_IDENTITY_CLIENT_ID string = identity.outputs.nodesClientId
output HPC_NODES_OUTBOUND_IP string = nodes.outputs.natPublicIp
