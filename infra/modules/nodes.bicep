// The network of the Azure compute nodes, in their own resource group (the autoscaler's
// Virtual Machine Contributor role is scoped to it, so the control plane can create, start,
// deallocate and delete VMs there and nowhere else). The VMs themselves are created by
// shared/adapters/azure_compute.py, not here: they come and go with `hpc node add/remove`.
// Nodes get no public IP and accept no inbound traffic; they reach Service Bus, Blob storage
// and the package index outbound through a NAT gateway (new subnets have no default outbound
// access).
param location string
param tags object
param vnetName string
param addressPrefix string = '10.40.0.0/16'
param subnetPrefix string = '10.40.0.0/20'
@description('Principal id of the control plane identity (the autoscaler).')
param controlPlanePrincipalId string

var virtualMachineContributor = '9980e02c-c2be-4d73-94e8-173b1dc7cf3c'

resource nsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${vnetName}-nodes-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'deny-inbound-internet'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource natIp 'Microsoft.Network/publicIPAddresses@2023-11-01' = {
  name: '${vnetName}-nat-ip'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource nat 'Microsoft.Network/natGateways@2023-11-01' = {
  name: '${vnetName}-nat'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: {
    idleTimeoutInMinutes: 10
    publicIpAddresses: [ { id: natIp.id } ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: [ addressPrefix ] }
    subnets: [
      {
        name: 'nodes'
        properties: {
          addressPrefix: subnetPrefix
          networkSecurityGroup: { id: nsg.id }
          natGateway: { id: nat.id }
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

resource vmContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, controlPlanePrincipalId, virtualMachineContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', virtualMachineContributor)
    principalId: controlPlanePrincipalId
    principalType: 'ServicePrincipal'
  }
}

output subnetId string = vnet.properties.subnets[0].id
output natPublicIp string = natIp.properties.ipAddress
