// The two user-assigned managed identities: the control plane's (the Function App) and the
// Azure nodes' (attached to every node VM; the agent's only credential, so the VMs' custom
// data carries no secret). User-assigned rather than system-assigned: the role assignments
// can be made before the Function App exists, and the app settings name the client id.
param location string
param tags object
param functionsIdentityName string
param nodesIdentityName string

resource functions 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: functionsIdentityName
  location: location
  tags: tags
}

resource nodes 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: nodesIdentityName
  location: location
  tags: tags
}

output functionsId string = functions.id
output functionsPrincipalId string = functions.properties.principalId
output functionsClientId string = functions.properties.clientId
output nodesId string = nodes.id
output nodesName string = nodes.name
output nodesPrincipalId string = nodes.properties.principalId
output nodesClientId string = nodes.properties.clientId
