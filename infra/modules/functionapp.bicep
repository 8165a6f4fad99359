// The control plane: a Python Function App on the Flex Consumption plan (see docs/deploy.md
// for why Flex rather than the Linux Consumption plan). Every connection is identity-based,
// through the user-assigned identity `identityId`:
//   AzureWebJobsStorage__*     the host's own storage (timer leases)
//   ServiceBusConnection__*    the Service Bus triggers (shared/domain/messages.py CONNECTION_SETTING)
//   AZURE_CLIENT_ID            which identity DefaultAzureCredential picks in the adapters
// `hpcSettings` are the HPC_* app settings of shared/settings.py, assembled in main.bicep.
param location string
param tags object
param planName string
param appName string
param identityId string
param identityClientId string
param storageAccountName string
param storageBlobEndpoint string
param deploymentContainerName string
param serviceBusNamespace string
param appInsightsConnectionString string
@description('The HPC_* app settings (name -> value).')
param hpcSettings object
@allowed([ '3.11', '3.12' ])
param pythonVersion string = '3.11'
@description('Most instances the app scales out to (Flex Consumption: 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40
@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

var hostSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}
var settings = union(hostSettings, hpcSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    //checkov:skip=CKV_AZURE_225:zone redundancy is a setting of dedicated plans; Flex Consumption places instances itself
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    //checkov:skip=CKV_AZURE_17:client certificates: the CLI and dashboard send bearer tokens, not certificates
    //checkov:skip=CKV_AZURE_222:the control-plane API is public by design (users and the hpc CLI reach it over HTTPS with a token)
    //checkov:skip=CKV_AZURE_212:Flex Consumption has no minimum instance count for failover; the platform replaces instances and scales from zero
    //checkov:skip=CKV_AZURE_213:App Service health check replaces unhealthy instances of dedicated plans; Flex Consumption manages its instances itself (GET /api/health serves outside probes)
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for s in items(settings): { name: s.key, value: s.value }]
    }
  }
}

resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

output name string = app.name
output url string = 'https://${app.properties.defaultHostName}'
