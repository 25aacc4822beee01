// kube-audit-forwarder for AKS: the aks-handler function app, fed by the cluster's audit diagnostic setting
// through an Event Hub, with its logtypeconfig in Key Vault and undelivered records parked in a blob container.
// Identity everywhere: no storage keys, no root SAS; the only SAS rule is the one diagnostic settings require.
// azuredeploy.json is the same deployment in ARM JSON ("Deploy to Azure"); infra/check.py keeps them in step.

@description('Existing AKS cluster (in this resource group) whose audit log to forward.')
param aksClusterName string

@description('Audit category: kube-audit-admin (no get/list, cheaper, recommended) or kube-audit (everything). Never both: that duplicates every write.')
@allowed([
  'kube-audit-admin'
  'kube-audit'
])
param auditCategory string = 'kube-audit-admin'

@secure()
@description('The base64 logtypeconfig of your Site24x7 "Kubernetes Audit Logs" log type. Stored in Key Vault only.')
param logTypeConfig string

@description('Pinned URL of the function-app zip built by templates/azure-functions/package.py (a release asset, never a moving branch).')
param packageUrl string

@description('Prefix for resource names (3-11 lower-case letters and digits).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'kaf'

param location string = resourceGroup().location

@description('Dedicated Linux plan (alwaysOn, so the Event Hub trigger runs without a content file share).')
@allowed([
  'B1'
  'S1'
  'P0v3'
  'P1v3'
])
param planSku string = 'P0v3'

@minValue(2)
@maxValue(32)
param partitionCount int = 4

@description('Send the function logs to Application Insights.')
param enableApplicationInsights bool = true

var suffix = uniqueString(resourceGroup().id, aksClusterName)
var storageName = toLower('${namePrefix}${suffix}')
var settingName = replace(auditCategory, '-', '_')
var roles = {
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: The function reaches its storage over the public endpoint (no VNet integration on this plan); access is by managed identity only, shared keys are off.
  // checkov:skip=CKV_AZURE_43: The name is computed (prefix of 3-11 lower-case letters/digits + uniqueString = 16-24 characters), which this check cannot evaluate.
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource failoverContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'audit-failover'
  properties: {
    publicAccess: 'None'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: App Service resolves Key Vault references over the public endpoint unless the app is VNet-integrated; access is RBAC-only (one role assignment to the function's identity).
  // checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109: disabling public access breaks the Key Vault reference without VNet integration.
  name: '${namePrefix}-kv-${suffix}'
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource logTypeConfigSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: The logtypeconfig has no expiry of its own; an expiry date here would silently stop log delivery. Rotate by updating the secret.
  parent: vault
  name: 'logtypeconfig'
  properties: {
    value: logTypeConfig
    contentType: 'application/base64'
  }
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: '${namePrefix}-ehns-${suffix}'
  location: location
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    minimumTlsVersion: '1.2'
    isAutoInflateEnabled: true
    maximumThroughputUnits: 4
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: eventHubNamespace
  name: 'aks-audit'
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: 7
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: eventHub
  name: 'kube-audit-forwarder'
}

// Diagnostic settings can only send through a namespace-level rule with Manage, Send and Listen.
resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: eventHubNamespace
  name: 'aks-diagnostics'
  properties: {
    rights: [
      'Manage'
      'Send'
      'Listen'
    ]
  }
}

resource logWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (enableApplicationInsights) {
  name: '${namePrefix}-log-${suffix}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = if (enableApplicationInsights) {
  name: '${namePrefix}-ai-${suffix}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logWorkspace.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy needs three or more instances; one instance suffices because Event Hubs keeps events (7 days) while the function restarts.
  name: '${namePrefix}-plan-${suffix}'
  location: location
  kind: 'linux'
  sku: {
    name: planSku
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  // checkov:skip=CKV_AZURE_212: A single instance is enough: Event Hubs retains events and the trigger resumes from its checkpoint after a restart.
  // checkov:skip=CKV_AZURE_213: The app has no HTTP trigger to probe; the host restarts an unhealthy custom handler itself.
  name: '${namePrefix}-fn-${suffix}'
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Disabled'
    clientCertEnabled: true
    clientCertMode: 'Optional'
    siteConfig: {
      linuxFxVersion: ''
      alwaysOn: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        {
          name: 'FUNCTIONS_EXTENSION_VERSION'
          value: '~4'
        }
        {
          name: 'FUNCTIONS_WORKER_RUNTIME'
          value: 'custom'
        }
        {
          name: 'WEBSITE_RUN_FROM_PACKAGE'
          value: packageUrl
        }
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'EventHubConnection__fullyQualifiedNamespace'
          value: '${eventHubNamespace.name}.servicebus.windows.net'
        }
        {
          name: 'EventHubName'
          value: eventHub.name
        }
        {
          name: 'EventHubConsumerGroup'
          value: consumerGroup.name
        }
        {
          name: 'FailoverStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'S247_${settingName}'
          value: '@Microsoft.KeyVault(SecretUri=${logTypeConfigSecret.properties.secretUri})'
        }
        {
          name: 'MIMALLOC_PURGE_DELAY'
          value: '0'
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: enableApplicationInsights ? appInsights.properties.ConnectionString : ''
        }
      ]
    }
  }
}

resource receiverRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: eventHubNamespace
  name: guid(eventHubNamespace.id, site.id, roles.eventHubsDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUserRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, site.id, roles.keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Checkpoints, host leases and the failover container all live in this account.
resource blobOwnerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, site.id, roles.storageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource aks 'Microsoft.ContainerService/managedClusters@2024-05-01' existing = {
  name: aksClusterName
}

resource auditDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: aks
  name: 'kube-audit-forwarder'
  properties: {
    eventHubAuthorizationRuleId: diagnosticsRule.id
    eventHubName: eventHub.name
    logs: [
      {
        category: auditCategory
        enabled: true
      }
    ]
  }
}

output functionAppName string = site.name
output failoverContainerUrl string = '${storage.properties.primaryEndpoints.blob}${failoverContainer.name}'
output eventHubName string = eventHub.name
output keyVaultName string = vault.name
