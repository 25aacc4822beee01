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

@description('Prefix for resource names (3-11 lower-case letters and digits; hyphens are dropped). Each name starts with a fixed letter and is cut to its type\'s limit, so any prefix gives valid names.')
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

@description('Event Hub partitions: fixed at creation on the Standard tier. A redeployment with another value fails; keep the first value, or delete the hub (and its retained events) first.')
@minValue(2)
@maxValue(32)
param partitionCount int = 4

@description('An existing Key Vault (RBAC authorization, in this resource group) to hold the secret instead of a new one: for redeploying while the previous vault is soft-deleted (purge protection keeps it 90 days), or to use your own.')
param existingKeyVaultName string = ''

@description('Send the function logs to Application Insights.')
param enableApplicationInsights bool = true

@description('Tag records that raise a built-in detection rule (templates/detections) with detections and detection_severity; records that raise nothing are unchanged.')
@allowed([
  'on'
  'off'
])
param detections string = 'on'

@description('Forward only the events that raise a detection rule (a cost mode: security signals without the full audit trail); the summary counts what was skipped.')
param detectionsOnly bool = false

// Every name starts with a fixed letter (a prefix may start with a digit) and fits its type's length limit
// (a Key Vault name is at most 24 characters); infra/check.py evaluates them at the parameters' extremes.
// The storage account, lower-case letters and digits only, is named from uniqueString alone (lower-case).
// No toLower() on the prefix: checkov's ARM renderer drops every finding on resources named through it.
var prefix = replace(namePrefix, '-', '')
var suffix = uniqueString(resourceGroup().id, aksClusterName)
var storageName = 'st${suffix}'
var createVault = empty(existingKeyVaultName)
var vaultName = createVault ? take('kv-${prefix}-${suffix}', 24) : existingKeyVaultName
var namespaceName = 'ehns-${prefix}-${suffix}'
var workspaceName = 'log-${prefix}-${suffix}'
var insightsName = 'ai-${prefix}-${suffix}'
var planName = 'plan-${prefix}-${suffix}'
var siteName = 'fn-${prefix}-${suffix}'
var roles = {
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: The function reaches its storage over the public endpoint (no VNet integration on this plan); access is by managed identity only, shared keys are off.
  // checkov:skip=CKV_AZURE_43: The name is computed ('st' + uniqueString, 15 characters), which this check cannot evaluate; infra/check.py evaluates it.
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
    // Public endpoint (see CKV_AZURE_35), with Azure's trusted services let through.
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
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

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = if (createVault) {
  // checkov:skip=CKV_AZURE_110: checkov cannot read the body of a conditional resource; purge protection is on below, and infra/check.py checks it.
  // checkov:skip=CKV_AZURE_42: checkov cannot read the body of a conditional resource; soft delete and purge protection are on below, and infra/check.py checks them.
  // checkov:skip=CKV_AZURE_109: App Service resolves Key Vault references over the public endpoint unless the app is VNet-integrated; access is RBAC-only (one role assignment to the function's identity).
  // checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109: disabling public access breaks the Key Vault reference without VNet integration.
  name: vaultName
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

// The vault the secret lives in, created above or given: the secret's parent and the role's scope.
resource secretVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource logTypeConfigSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: The logtypeconfig has no expiry of its own; an expiry date here would silently stop log delivery. Rotate by updating the secret.
  parent: secretVault
  name: 'logtypeconfig'
  properties: {
    value: logTypeConfig
    contentType: 'application/base64'
  }
  dependsOn: [
    vault
  ]
}

// A diagnostic setting sends only to an Event Hub in the cluster's own region: the namespace follows the
// cluster, whatever `location` says.
resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: aks.location
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
  name: workspaceName
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = if (enableApplicationInsights) {
  name: insightsName
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
  name: planName
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
  name: siteName
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
    }
  }
}

// The app settings are applied once the identity may use what they name. A Key Vault reference resolved
// before the Secrets User role exists stays the literal `@Microsoft.KeyVault(...)` text.
resource appSettings 'Microsoft.Web/sites/config@2023-12-01' = {
  // checkov:skip=CKV_AZURE_66: This is the app-settings resource (name appsettings), not the site's web config; failed-request tracing is a site setting, and the site is checked.
  // checkov:skip=CKV_AZURE_63: This is the app-settings resource (name appsettings), not the site's web config; HTTP logging is a site setting, and the site is checked.
  // checkov:skip=CKV_AZURE_222: This is the app-settings resource (name appsettings); public network access is set on the site (Disabled), which is checked.
  // checkov:skip=CKV_AZURE_80: This is the app-settings resource (name appsettings); the app is a custom handler, no .NET Framework.
  // checkov:skip=CKV_AZURE_13: This is the app-settings resource (name appsettings); the app has no HTTP trigger, so App Service Authentication has nothing to protect.
  // checkov:skip=CKV_AZURE_88: This is the app-settings resource (name appsettings); the app runs from a package URL and needs no Azure Files share.
  // checkov:skip=CKV_AZURE_65: This is the app-settings resource (name appsettings); detailed error messages are a site setting, and the site is checked.
  parent: site
  name: 'appsettings'
  properties: {
    FUNCTIONS_EXTENSION_VERSION: '~4'
    FUNCTIONS_WORKER_RUNTIME: 'custom'
    WEBSITE_RUN_FROM_PACKAGE: packageUrl
    AzureWebJobsStorage__accountName: storage.name
    // The namespace's own endpoint, so sovereign clouds get their suffix.
    EventHubConnection__fullyQualifiedNamespace: replace(replace(eventHubNamespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
    EventHubName: eventHub.name
    EventHubConsumerGroup: consumerGroup.name
    FailoverStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    // One category is enabled, so the handler's catch-all setting routes it.
    logTypeConfig: '@Microsoft.KeyVault(SecretUri=${logTypeConfigSecret.properties.secretUri})'
    MIMALLOC_PURGE_DELAY: '0'
    // No transparent huge pages: the allocator's 2 MiB pages count in full however little of them is used
    // (peak RSS of an invocation of 32 full bodies, 48 MiB: 98.5 MiB without, 128.7 MiB with them; BENCHMARKS.md).
    MIMALLOC_ALLOW_THP: '0'
    DETECTIONS: detections
    DETECTIONS_ONLY: detectionsOnly ? 'true' : 'false'
    APPLICATIONINSIGHTS_CONNECTION_STRING: enableApplicationInsights ? appInsights.properties.ConnectionString : ''
    // Local auth is off on the component: telemetry is sent with the app's identity.
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: enableApplicationInsights ? 'Authorization=AAD' : ''
  }
  dependsOn: [
    secretsUserRole
    receiverRole
    blobOwnerRole
    insightsPublisherRole
  ]
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
  scope: secretVault
  name: guid(secretVault.id, site.id, roles.keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
  // The scope is the `existing` view of the vault, which adds no dependency on creating it.
  dependsOn: [
    vault
  ]
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

// With local auth off, the component takes telemetry only from identities with this role.
resource insightsPublisherRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableApplicationInsights) {
  scope: appInsights
  name: guid(appInsights.id, site.id, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
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
output keyVaultName string = vaultName
