// One storage account for the Functions host (AzureWebJobsStorage: timer leases, the Flex
// Consumption deployment package) and the task output of shared/adapters/blob_output.py
// (one append blob per task attempt and stream in the HPC_BLOB_CONTAINER container).
// Shared keys are off: every client (Functions host, control plane, agents) uses Entra ID.
param location string
param tags object
param accountName string
@description('The task-output container (HPC_BLOB_CONTAINER).')
param outputContainerName string = 'output'
@description('The Flex Consumption deployment container (functionAppConfig.deployment).')
param deploymentContainerName string = 'deploymentpackage'
@description('Task output older than this is deleted by a lifecycle rule (0: kept forever).')
@minValue(0)
param outputRetentionDays int = 90

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    //checkov:skip=CKV_AZURE_206:task output and the deployment package are re-creatable; zone or geo replication costs 25-100% more per GB
    //checkov:skip=CKV_AZURE_59:on-premises agents write task output over the internet (outbound HTTPS); access is Entra ID only, shared keys are off
    //checkov:skip=CKV_AZURE_35:on-premises agents publish task output from addresses not known here; every request needs an Entra ID token (shared keys are off)
    //checkov:skip=CKV_AZURE_43:the name is 'st' plus uniqueString() (13 lowercase letters and digits), valid; checkov cannot evaluate the interpolation
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource outputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: outputContainerName
  properties: { publicAccess: 'None' }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (outputRetentionDays > 0) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-task-output'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [ 'appendBlob' ]
              prefixMatch: [ '${outputContainerName}/' ]
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: outputRetentionDays }
              }
            }
          }
        }
      ]
    }
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output outputContainerName string = outputContainer.name
output deploymentContainerName string = deploymentContainer.name
